"""The report: analysis tables against the metrics, verdicts, and the built book in a browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from browser import SCREENSHOT_DIR, check_page, find_chromium

from pruneflow import metrics
from pruneflow.report import book, claims
from pruneflow.report import tables as report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> report.Evidence:
    return report.gather("smoke", str(tmp_path_factory.mktemp("results")), "strategy")


def test_alphas_follow_the_metrics(smoke):
    """Per-run alpha_hat equals metrics.alpha_hat on that run's classes, recomputed from raw rows."""
    frame = smoke.frame[smoke.frame.status == "ok"]
    for run in smoke.runs.sample(5, random_state=0).itertuples():
        rows = frame[(frame.run_id == run.run_id) & (frame.stage == "finetuned")].sort_values("class")
        dense = frame[(frame.run_id == run.dense_id) & (frame.stage == "dense")].sort_values("class")
        bbar_t = metrics.normalized_recall_balance(rows.recall.to_numpy(), rows.accuracy.iloc[0])
        bbar_1 = metrics.normalized_recall_balance(dense.recall.to_numpy(), dense.accuracy.iloc[0])
        assert run.alpha_hat == pytest.approx(float(metrics.alpha_hat(bbar_1, bbar_t)))


def test_summary_counts_every_model(smoke):
    """Each (strategy, t) cell of the summary averages all its models and marks its CI."""
    table = report.summary(smoke.runs[smoke.runs.dataset == "digits"], ["strategy"])
    assert set(table.models) == {3}
    assert np.allclose(
        table.alpha_hat,
        smoke.runs[smoke.runs.dataset == "digits"]
        .groupby(["strategy", "compression"])
        .alpha_hat.mean()
        .to_numpy(),
    )
    assert set(table["mark"]) <= {">", "<", "?"}


@pytest.mark.parametrize(
    ("marks", "expected", "verdict"),
    [
        ([">", ">", "?"], ">", "supported"),
        (["<", "?"], ">", "contradicted"),
        ([">", "<"], ">", "inconclusive"),
        (["?", "?"], "<", "inconclusive"),
        (["<"], "<", "supported"),
    ],
)
def test_verdict(marks, expected, verdict):
    assert claims.verdict(marks, expected) == verdict


def test_claims_cover_every_claim(smoke, tmp_path):
    """One row per claim, thresholds written into the claim's text, a verdict from the vocabulary."""
    sizes = report.gather("smoke", str(tmp_path), "model_size")
    table = claims.claims(smoke.runs, sizes.runs, high=10, low=2)
    assert list(table.key) == list(claims.CLAIMS)
    assert "t >= 10" in table.claim.iloc[0] and "t <= 2" in table.claim.iloc[1]
    assert not table.claim.str.contains("{").any()
    assert set(table.verdict) <= {"supported", "contradicted", "inconclusive"}


def test_conclusions_type_no_number():
    """The markdown of the conclusions page holds no digit outside glue roles and math."""
    cells = json.loads((ROOT / "notebooks" / "conclusions.ipynb").read_text())["cells"]
    prose = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    prose = re.sub(r"\{glue:\w+\}`[^`]+`", "", prose)
    prose = re.sub(r"\$[^$]+\$", "", prose)
    assert not re.search(r"\d", prose), re.findall(r".{20}\d.{20}", prose)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The book built on the smoke profile in a scratch copy of the report sources."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    for name in ("notebooks", "scripts"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copytree(
        ROOT / "book", root / "book", symlinks=True, ignore=shutil.ignore_patterns("generated", "_build")
    )
    return book.build("smoke", root / "results", root=root, progress=False)


@pytest.mark.slow
def test_book_builds_and_renders_offline(built):
    """index.html and every question page draw their charts and typeset math with no network."""
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    html = built.parent
    pages = [built, *sorted((html / "generated").glob("q*.html"))]
    assert [p.stem for p in pages[1:]] == [
        "q1_strategy-digits",
        "q1_strategy-mnist1d",
        "q2_task_complexity-all",
        "q3_model_size-all",
        "q4_undecayed-all",
    ]
    for page in pages:
        result = check_page(page, png=SCREENSHOT_DIR / f"{page.stem}.png")
        if page.stem.startswith("q"):
            assert len(result.charts) >= 2, f"{page.name}: boxplot and scatter expected"
        assert result.math.containers > 0, f"{page.name}: no math typeset"
    paper_page = html / "generated" / "paper_vs_ours-all.html"  # issue 12: the published numbers round-trip
    assert len(check_page(paper_page, png=SCREENSHOT_DIR / "paper_vs_ours.png").charts) >= 1
    assert "0.928" in paper_page.read_text()  # Figure 5, MP at t = 2, read from the CSV


@pytest.mark.slow
def test_conclusions_page_shows_computed_verdicts(built):
    """Every claim line of the built conclusions page carries a verdict pasted from the results."""
    text = (built.parent / "generated" / "conclusions-all.html").read_text()
    verdicts = re.findall(r"<strong>(supported|contradicted|inconclusive)</strong>", text)
    assert len(verdicts) == len(claims.CLAIMS)

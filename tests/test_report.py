"""The report: analysis tables against the metrics, and the built book in a browser."""

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


def test_claims_on_the_tidy_rows(smoke):
    """evaluate takes the tidy result rows as well as the per-run table, with the same answer; every
    claim gets a row whose finite interval holds its estimate and a verdict from the vocabulary."""
    table = claims.evaluate(smoke.frame, resamples=0)
    again = claims.evaluate(claims.per_run(smoke.frame), resamples=0)
    assert list(table.claim) == list(claims.KEYS)
    assert table.equals(again)
    finite = table.dropna(subset=["ci_low", "ci_high"])
    assert (finite.ci_low <= finite.estimate).all() and (finite.estimate <= finite.ci_high).all()
    assert set(table.verdict) <= set(claims.VERDICTS)
    cells = claims.cells(claims.per_run(smoke.frame))
    assert cells.models.sum() == len(smoke.runs) and cells.usable.dtype == bool


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


@pytest.mark.slow
def test_conclusions_page_answers_every_claim(built):
    """The built conclusions page answers every claim in words with a verdict pasted from the results,
    draws the forest plot, and carries no vote count of per-cell marks."""
    page = built.parent / "generated" / "conclusions-all.html"
    text = page.read_text()
    verdicts = re.findall(r"</em> <strong>(supported|contradicted|equivalent|inconclusive)</strong>", text)
    assert len(verdicts) == len(claims.KEYS)
    assert not re.search(r"\d+ &gt;, \d+ &lt;", text) and not re.search(r"\d+ >, \d+ <", text)
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    result = check_page(page, png=SCREENSHOT_DIR / f"{page.stem}.png")
    assert len(result.charts) >= 1, "forest plot expected"


@pytest.mark.slow
def test_question_pages_draw_the_null_baseline_curves(built):
    """Every question page draws alpha_hat against retained accuracy with both null curves."""
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    pages = sorted((built.parent / "generated").glob("q*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert "additive A_1/A_t" in text and "error odds ratio" in text, page.name
        result = check_page(page)
        assert len(result.charts) >= 3 and all(chart.drawn for chart in result.charts), page.name

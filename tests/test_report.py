"""The report: analysis tables against the metrics, and the built book in a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from browser import SCREENSHOT_DIR, check_page, find_chromium, first_screen_items, layout

from pruneflow import metrics
from pruneflow.experiment import grid
from pruneflow.experiment.profiles import load_profile
from pruneflow.report import book, claims, evidence, pages, sections
from pruneflow.report import tables as report

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("mnist5k-lenet5", "digits-resnet20")  # the smoke book's Q1 pages of other architectures


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    """A results folder holding every run of the smoke profile."""
    folder = tmp_path_factory.mktemp("results")
    grid.run("smoke", folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def smoke(smoke_results) -> evidence.Evidence:
    return evidence.read(load_profile("smoke"), smoke_results, ["strategy"]).evidence(["strategy"])


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


def test_pages_named_and_ordered_by_difficulty():
    """Page files carry no ``-all``; Q1 pages go from the easiest dataset (lowest dense error) up."""
    profile = load_profile("smoke")
    dense = pd.DataFrame(
        {"run_id": ["a", "b"], "stage": "dense", "status": "ok", "dataset": ["digits", "mnist1d"]}
    )
    easy_digits = [p.name for p in pages.plan(profile, dense.assign(accuracy=[0.9, 0.5]))]
    easy_mnist1d = [p.name for p in pages.plan(profile, dense.assign(accuracy=[0.5, 0.9]))]
    assert easy_digits[:3] == ["methods", "q1_strategy-digits", "q1_strategy-mnist1d"]
    assert easy_mnist1d[:3] == ["methods", "q1_strategy-mnist1d", "q1_strategy-digits"]
    assert easy_digits[3:5] == ["q1_strategy-mnist5k-lenet5", "q1_strategy-digits-resnet20"]  # issue 21
    assert easy_digits[5:] == [
        "q2_task_complexity",
        "q3_model_size",
        "q4_undecayed",
        "retraining",
        "conclusions",
        "appendix",
        "paper_analyses",
        "paper_vs_ours",
    ]


def test_page_key_follows_its_inputs(tmp_path):
    """The page cache key changes with the notebook, the parameters, the code and the rows."""
    notebook = tmp_path / "page.ipynb"
    notebook.write_text("{}")
    page = pages.Page("q1_strategy", "digits", {"dataset": "digits"})
    key = book.page_key(page, notebook, {"profile": "smoke"}, "code", "rows")
    assert key == book.page_key(page, notebook, {"profile": "smoke"}, "code", "rows")
    assert key != book.page_key(page, notebook, {"profile": "quick"}, "code", "rows")
    assert key != book.page_key(
        pages.Page("q1_strategy", "x", {"dataset": "x"}), notebook, {"profile": "smoke"}, "code", "rows"
    )
    assert key != book.page_key(page, notebook, {"profile": "smoke"}, "code2", "rows")
    assert key != book.page_key(page, notebook, {"profile": "smoke"}, "code", "rows2")
    notebook.write_text("{ }")
    assert key != book.page_key(page, notebook, {"profile": "smoke"}, "code", "rows")
    frame = pd.DataFrame({"run_id": ["b", "a"], "stage": "dense", "class": [0, 1], "recall": [0.5, 0.7]})
    assert book.rows_hash(frame) == book.rows_hash(frame.iloc[::-1])
    assert book.rows_hash(frame) != book.rows_hash(frame.assign(recall=[0.5, 0.71]))


PATH_RE = re.compile(r"(/tmp/|/home/|/work/|/Users/|/root/|[A-Z]:\\\\)")
SUMMARY_RE = re.compile(r"\d+ runs - \d+ computed, \d+ cached")


TOY = "smoke_toy.yaml"  # the smoke profile plus a plugin that declares one more page, "toy"
TOY_DECLARATION = """from pruneflow.report.pages import Declaration, declare

declare(Declaration("toy", "Questions", ("strategy",)))
"""
TOY_NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# A toy question\n\n", "{glue:md}`toy_runs`"]},
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters", "hide-input"]},
            "source": ["profile = None\n", "results = None\n", "book = None\n", 'stage = "finetuned"'],
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {"tags": ["hide-input"]},
            "source": [
                "from pruneflow.report import tables\n",
                "from pruneflow.report.context import open_page\n",
                "\n",
                'page = open_page("toy", profile, results, book, stage)\n',
                'summary = tables.summary(page.evidence().runs, ["dataset", "strategy"])\n',
                'page.glue("toy_runs", f"{len(summary)} cells.")\n',
                "page.show(summary)",
            ],
            "outputs": [],
            "execution_count": None,
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def add_toy_page(root: Path) -> None:
    """Add a question page as a user would: its notebook, its declaration (in a profile's plugin) and
    the profile that names the plugin: three files."""
    (root / "notebooks" / "toy.ipynb").write_text(json.dumps(TOY_NOTEBOOK))
    (root / "toy_page.py").write_text(TOY_DECLARATION)
    smoke = (ROOT / "pruneflow" / "experiment" / "profiles" / "smoke.yaml").read_text()
    (root / TOY).write_text(smoke.replace("name: smoke", "name: smoke\nplugins: [toy_page.py]"))


def jupyter_book(root: Path) -> subprocess.CompletedProcess:
    """``PRUNEFLOW_PROFILE=smoke_toy.yaml jupyter-book build book`` in ``root`` (the smoke profile and
    the toy page), results in ``root/results``."""
    command = Path(sys.executable).parent / "jupyter-book"
    environ = os.environ | {
        "PRUNEFLOW_PROFILE": str(root / TOY),
        "PRUNEFLOW_RESULTS": "results",
        book.PHASES_ENV: str(root / "phases.json"),
    }
    return subprocess.run(
        [str(command if command.exists() else "jupyter-book"), "build", "book"],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
    )


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: its modification time (ns) and content."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The smoke book built by ``jupyter-book build book`` in a fresh copy of the report sources;
    returns the path of its ``index.html``."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    for name in ("notebooks", "scripts"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copytree(
        ROOT / "book",
        root / "book",
        symlinks=True,
        ignore=shutil.ignore_patterns("generated", "_build", "data"),
    )
    add_toy_page(root)
    done = jupyter_book(root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    count = len(pages.plan(load_profile("smoke"))) + 1
    assert f"pages: {count} executed, 0 unchanged" in done.stdout
    phases = json.loads((root / "phases.json").read_text())  # what `pruneflow report` prints
    assert set(phases) == {"grid", "pages"} and phases["grid"] > 0 and phases["pages"] > 0
    return root / "_build" / "html" / "index.html"


@pytest.mark.slow
def test_a_declared_page_is_built_into_the_book(built):
    """The toy page, declared in a plugin, is executed, listed in the table of contents after the
    question pages, and shows its glued sentence and table."""
    html = built.parent
    toy = (html / "generated" / "toy.html").read_text()
    assert "A toy question" in toy and re.search(r"\d+ cells\.", toy) and "pruneflow-table" in toy
    sidebar = (html / "generated" / "methods.html").read_text()
    assert sidebar.index("q4_undecayed.html") < sidebar.index("toy.html") < sidebar.index("conclusions.html")


@pytest.mark.slow
def test_index_opens_with_the_findings(built):
    """The index's first screen (1280 x 800) holds at least three findings, each marked against the paper."""
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    marks = ("agrees with the paper", "differs from the paper", "not settled here")
    shown = [item for item in first_screen_items(built) if any(m in item for m in marks)]
    assert len(shown) >= 3, shown


@pytest.mark.slow
def test_paper_vs_ours_shows_our_numbers_and_names_each_line(built):
    """Paper vs ours shows our values beside the paper's on the page, not only in a CSV, and its chart
    colours one line per source, named in a legend, in one panel per strategy."""
    html = built.parent
    text = (html / "generated" / "paper_vs_ours.html").read_text()
    table = pd.read_csv(html / "_static" / "data" / "paper_vs_ours-figure5-alpha.csv")
    ours = [c for c in table.columns if c.startswith("ours: ") and c.endswith("_ours")]
    assert ours, table.columns
    value = table[ours[0]].dropna().iloc[0]
    assert f"{value:.3f}" in text
    spec = re.search(r'"facet": \{"field": "strategy"', text) or re.search(
        r'"facet":\s*\{[^}]*"strategy"', text
    )
    assert spec and '"field": "source"' in text and "paper (CIFAR-10/ResNet-56)" in text


@pytest.mark.slow
def test_book_builds_and_renders_offline(built):
    """index.html and every question page draw their charts and typeset math with no network."""
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    html = built.parent
    files = [built, *sorted((html / "generated").glob("q*.html"))]
    assert [p.stem for p in files[1:]] == [
        "q1_strategy-digits-resnet20",
        "q1_strategy-digits",
        "q1_strategy-mnist1d",
        "q1_strategy-mnist5k-lenet5",
        "q2_task_complexity",
        "q3_model_size",
        "q4_undecayed",
    ]
    for page in files:
        result = check_page(page, png=SCREENSHOT_DIR / f"{page.stem}.png")
        if page.stem.startswith("q"):
            assert len(result.charts) >= 2, f"{page.name}: boxplot and scatter expected"
        assert result.math.containers > 0, f"{page.name}: no math typeset"
    q1 = {p: check_page(html / "generated" / f"q1_strategy-{p}.html") for p in ("digits", *ARCHITECTURES)}
    assert len(q1["digits"].charts) >= 3, "heatmap expected"
    for name in ARCHITECTURES:  # issue 21: LeNet-5 and the ResNet draw every chart of the MLP's page
        assert len(q1[name].charts) == len(q1["digits"].charts), (name, q1[name].charts)
    paper_page = html / "generated" / "paper_vs_ours.html"  # issue 12: the published numbers round-trip
    assert len(check_page(paper_page, png=SCREENSHOT_DIR / "paper_vs_ours.png").charts) >= 1
    assert "0.928" in paper_page.read_text()  # Figure 5, MP at t = 2, read from the CSV


@pytest.mark.slow
def test_pages_fit_the_column_and_show_no_summary_or_path(built):
    """On every page: no chart or table wider than the content column, no grid summary line and no
    filesystem path of the build machine; each table links its CSV, which exists."""
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    files = sorted((built.parent / "generated").glob("*.html"))
    assert {p.stem for p in files} >= {"methods", "conclusions", "appendix"}
    for page in files:
        text = page.read_text()
        assert not SUMMARY_RE.search(text), f"{page.name}: grid summary line"
        assert str(built.parents[2]) not in text and not PATH_RE.search(text), (
            f"{page.name}: machine path {PATH_RE.search(text)}"
        )
        for cell in text.split('<div class="cell ')[1:]:
            if "tag_hide-input" in cell.split(">", 1)[0]:
                assert "cell_output" in cell.split('<div class="cell ', 1)[0], f"{page.name}: empty toggle"
        for link in re.findall(r'href="(\.\./_static/data/[^"]+\.csv)"', text):
            assert (page.parent / link).resolve().is_file(), f"{page.name}: {link} missing"
        found = layout(page)
        assert found.column > 400, f"{page.name}: content column {found.column} px"
        assert not found.too_wide(), (
            f"{page.name}: wider than the {found.column} px column: {found.too_wide()}"
        )
    assert (built.parent / "_static" / "data" / "q1_strategy-digits-table-1.csv").is_file()


@pytest.mark.slow
def test_rebuild_executes_nothing(built):
    """A second ``jupyter-book build book`` with nothing changed re-executes no page."""
    generated = built.parents[2] / "book" / "generated"
    before = snapshot(generated)
    done = jupyter_book(built.parents[2])
    assert done.returncode == 0, done.stdout[-3000:]
    count = len(pages.plan(load_profile("smoke"))) + 1
    assert f"pages: 0 executed, {count} unchanged" in done.stdout
    assert snapshot(generated) == before


@pytest.mark.slow
def test_conclusions_page_answers_every_claim(built):
    """The built conclusions page answers every claim in words with a verdict pasted from the results,
    draws the forest plot, and carries no vote count of per-cell marks."""
    page = built.parent / "generated" / "conclusions.html"
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
    files = sorted((built.parent / "generated").glob("q*.html"))
    assert files
    for page in files:
        text = page.read_text()
        assert "additive A_1/A_t" in text and "error odds ratio" in text, page.name
        result = check_page(page)
        assert len(result.charts) >= 3 and all(chart.drawn for chart in result.charts), page.name


@pytest.mark.slow
def test_failing_page_leaves_the_last_good_book(built):
    """A page that raises stops the build with a non-zero exit naming its notebook and cell; the
    HTML and the executed pages stay as they were (runs last: it edits the copy's notebook)."""
    root = built.parents[2]
    source = root / "notebooks" / "appendix.ipynb"
    notebook = json.loads(source.read_text())
    broken = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": []}
    notebook["cells"].append(broken | {"source": ["raise RuntimeError('page broken on purpose')"]})
    notebook["cells"][-1].pop("id", None)
    source.write_text(json.dumps(notebook))
    html, generated = snapshot(root / "_build" / "html"), snapshot(root / "book" / "generated")
    done = jupyter_book(root)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "notebooks/appendix.ipynb, cell" in output and "page broken on purpose" in output, output[-3000:]
    assert "stale" in output
    assert snapshot(root / "_build" / "html") == html
    assert snapshot(root / "book" / "generated") == generated


def _notebook(path: Path, *sources: str) -> Path:
    """A notebook of a markdown title, a ``parameters`` cell and code cells ``sources``."""
    code = {"cell_type": "code", "execution_count": None, "outputs": []}
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n"]},
        code | {"metadata": {"tags": ["parameters"]}, "source": ["x = 0\n"]},
        *(code | {"metadata": {}, "source": [s]} for s in sources),
    ]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    path.write_text(json.dumps({"cells": cells, "metadata": kernel, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.mark.slow
def test_pages_execute_side_by_side_and_a_failure_names_its_page(tmp_path):
    """Two kernels at once give each page its own parameters; a failing page among them raises
    PageFailed naming its notebook and error, whichever finishes first."""
    ok = _notebook(tmp_path / "ok.ipynb", "print('x is', x)")
    bad = _notebook(tmp_path / "bad.ipynb", "raise RuntimeError('broken on purpose')")
    (tmp_path / "out").mkdir()
    stale = [
        (pages.Page("ok", "a", {"x": 1}), ok, tmp_path / "out" / "ok-a.ipynb"),
        (pages.Page("ok", "b", {"x": 2}), ok, tmp_path / "out" / "ok-b.ipynb"),
    ]
    done = book._execute_all(stale, {}, tmp_path, tmp_path, workers=2, progress=False)
    assert done == ["ok-a", "ok-b"]
    for key, x in (("a", 1), ("b", 2)):
        text = (tmp_path / "out" / f"ok-{key}.ipynb").read_text()
        assert f"x is {x}" in text and f"# Title ({key})" in text
    broken = [stale[0], (pages.Page("bad", "all"), bad, tmp_path / "out" / "bad.ipynb")]
    with pytest.raises(
        book.PageFailed, match=r"page bad failed: notebooks/bad\.ipynb, cell .*broken on purpose"
    ):
        book._execute_all(broken, {}, tmp_path, tmp_path, workers=2, progress=False)


def test_q3_says_which_families_have_a_width_ladder(tmp_path):
    """Issue 21: Q3 names the families its ladder covers and, for an architecture grid without one, what
    the ladder would add; a ResNet rung in the ladder makes the ResNet covered."""
    smoke = load_profile("smoke")
    page = pages_context("q3_model_size", "smoke")
    text = sections.ladders(page)
    ladder = smoke.grids["model_size"]
    dense = 2 * len({r.dense.seed for r in smoke.grids["resnet"]})  # two widths in smoke's ladder
    assert text.startswith("The width ladder (0.125, 0.25) covers MLP.")
    assert f"ResNet: the same ladder over the 2 seeds of grid `resnet` would add {dense} dense models" in text
    assert f"{dense * len(ladder) // len({r.dense for r in ladder})} pruned runs" in text
    spec = yaml.safe_load((ROOT / "pruneflow/experiment/profiles/smoke.yaml").read_text())
    spec["grids"]["model_size"]["models"].append({"name": "resnet20", "width": 0.25})
    (tmp_path / "ladder.yaml").write_text(yaml.safe_dump(spec))
    text = sections.ladders(pages_context("q3_model_size", str(tmp_path / "ladder.yaml")))
    assert "covers MLP, ResNet." in text and "ResNet:" not in text and "LeNet-5: the same ladder" in text


def pages_context(notebook: str, profile: str):
    from pruneflow.report.context import PageContext

    return PageContext(notebook, profile, "unused")

"""The book's page declarations, and a page executed on its own: it reads, never computes."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pruneflow.experiment import grid
from pruneflow.experiment.profiles import load_profile, shipped
from pruneflow.report import evidence, pages

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def code_cells() -> dict[str, list[list[str]]]:
    """Notebook name -> the lines of each of its code cells."""
    found = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        found[path.stem] = ["".join(c["source"]).splitlines() for c in cells if c["cell_type"] == "code"]
    return found


def test_every_notebook_is_declared_and_every_declaration_has_its_notebook():
    assert set(pages.PAGES.names()) == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}


@pytest.mark.parametrize("name", shipped())
def test_each_profile_gets_the_pages_its_grids_allow(name):
    """A page needs its declared grids; the toc lists every planned page once, under its part."""
    profile = load_profile(name)
    planned = pages.plan(profile)
    for notebook in pages.PAGES.names():
        wanted = set(pages.PAGES[notebook].grids) <= set(profile.grids)
        assert any(p.notebook == notebook for p in planned) == wanted, notebook
    files = [c["file"] for part in pages.toc(planned)["parts"] for c in part["chapters"]]
    assert files == [f"generated/{p.name}" for p in planned]


def test_a_declaration_without_its_grid_is_left_out_and_a_bad_part_refused():
    profile = load_profile("smoke")
    with pytest.raises(ValueError, match="unknown part 'Extras'"):
        pages.Declaration("x", "Extras")
    probe = pages.Declaration("probe", "Questions", ("no_such_grid",))
    assert not set(probe.grids) <= set(profile.grids)
    assert probe.read(profile) == []


def test_notebooks_are_prose_plus_calls():
    """Code cells total at most 350 lines and no block of six lines of a cell repeats in another notebook."""
    cells = code_cells()
    lines_of = {name: sum(map(len, c)) for name, c in cells.items()}
    assert sum(lines_of.values()) <= 350, lines_of
    seen: dict[str, str] = {}
    for name, lines in ((n, cell) for n, c in cells.items() for cell in c):
        for i in range(len(lines) - 5):
            block = "\n".join(line.strip() for line in lines[i : i + 6])
            key = hashlib.sha256(block.encode()).hexdigest()
            first = seen.setdefault(key, name)
            assert first == name or not block.strip(), f"{name} repeats {first}:\n{block}"


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    grid.run("smoke", folder, progress=False)
    return folder


def files_of(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def papermill(notebook: str, output: Path, *params: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{notebook}.ipynb"), str(output)]
    return subprocess.run([*command, *params], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_a_page_alone_reads_its_rows_and_computes_nothing(smoke_results, tmp_path):
    """papermill on q1 with a results folder that holds its rows adds and rewrites no file there."""
    before = files_of(smoke_results)
    done = papermill(
        "q1_strategy",
        tmp_path / "q1.ipynb",
        "-p",
        "profile",
        "smoke",
        "-p",
        "results",
        str(smoke_results),
        "-p",
        "dataset",
        "mnist1d",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert files_of(smoke_results) == before


def test_missing_rows_name_the_command(tmp_path):
    """A results folder without a page's rows is refused in one line naming the command to run."""
    with pytest.raises(evidence.MissingRuns) as error:
        evidence.read(load_profile("smoke"), tmp_path, ["strategy"], source="smoke")
    message = str(error.value)
    assert "\n" not in message
    assert f"python -m pruneflow run --profile smoke --results {tmp_path}" in message
    assert error.value._render_traceback_() == [f"pruneflow: error: {message}"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "params, message",
    [
        (["-p", "stage", "nosuchstage"], "parameter stage='nosuchstage' is not one of 'finetuned', 'pruned'"),
        (["-p", "dataset", "nosuchdataset"], "parameter dataset='nosuchdataset' is not one of 'digits'"),
        (["-y", "strategies: [XP]"], "parameter strategies='XP' is not one of 'MP', 'GP', 'UP', 'RP'"),
        (["-p", "profile", "nosuchprofile"], "unknown profile 'nosuchprofile'"),
    ],
)
def test_bad_notebook_parameters_fail_in_one_line(smoke_results, tmp_path, params, message):
    done = papermill("q1_strategy", tmp_path / "q1.ipynb", "-p", "results", str(smoke_results), *params)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert re.search(rf"pruneflow: error: (q1_strategy: )?{re.escape(message)}", output), output[-2000:]

"""The code fingerprint in a run's identity: code edits recompute, comment edits do not."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pruneflow.experiment import results
from pruneflow.experiment.fingerprint import source_fingerprint
from pruneflow.experiment.profiles import parse
from tests.test_grid import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = {**tiny_spec(seeds=1), "name": "fp"}
MP_LINE = "    return {n: w.detach().abs() for n, w in weights.items()}\n"


def test_source_fingerprint_ignores_comments_docstrings_and_layout():
    base = 'def f(w):\n    """Score."""\n    return abs(w)\n'
    same = 'def f(w):  # a comment\n    """Another docstring."""\n\n    return abs( w )\n'
    changed = 'def f(w):\n    """Score."""\n    return abs(w) * 2\n'
    assert source_fingerprint(base) == source_fingerprint(same)
    assert source_fingerprint(base) != source_fingerprint(changed)
    assert source_fingerprint('"""Doc."""\nx = 1\n') == source_fingerprint("x = 1\n")


def _run(package: Path, profile: Path, out: Path) -> tuple[str, dict[str, int], dict[str, int]]:
    """Run the CLI on the package copy; return its output and the mtimes of dense and run files."""
    env = {**os.environ, "PYTHONPATH": str(package)}
    cmd = [
        sys.executable,
        "-m",
        "pruneflow",
        "run",
        "--profile",
        str(profile),
        "--results",
        str(out),
        "--quiet",
    ]
    stdout = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=package).stdout
    mtimes = {
        folder: {p.name: p.stat().st_mtime_ns for p in (out / folder).glob("*")}
        for folder in ("dense", "runs")
    }
    return stdout, mtimes["dense"], mtimes["runs"]


def test_editing_a_strategy_recomputes_pruned_runs_not_dense_models(tmp_path):
    package = tmp_path / "copy"
    shutil.copytree(ROOT / "pruneflow", package / "pruneflow", ignore=shutil.ignore_patterns("__pycache__"))
    profile = tmp_path / "fp.yaml"
    profile.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "results"
    n_runs = len(parse(SPEC).runs)
    strategies = package / "pruneflow" / "strategies.py"
    source = strategies.read_text()
    assert MP_LINE in source

    first, dense, runs = _run(package, profile, out)
    assert f"{n_runs} computed, 0 cached" in first

    strategies.write_text(
        source.replace(MP_LINE, "    # scores are |w|\n" + MP_LINE).replace('"""MP:', '"""MP,')
    )
    again, dense_again, runs_again = _run(package, profile, out)
    assert f"0 computed, {n_runs} cached" in again, "a comment edit recomputed runs"
    assert (dense_again, runs_again) == (dense, runs)

    strategies.write_text(source.replace(MP_LINE, MP_LINE.replace(".abs()", ".abs() + 1e-12")))
    edited, dense_edited, runs_edited = _run(package, profile, out)
    assert f"{n_runs} computed, 0 cached" in edited, "a code edit was read back from the old rows"
    assert dense_edited == dense, "the dense models were retrained or rewritten"
    assert set(runs) < set(runs_edited) and all(runs_edited[name] == t for name, t in runs.items())

    rows = results.load(out)
    pruned = rows[rows.stage != "dense"].groupby("code_fingerprint").run_id.nunique()
    assert sorted(pruned.tolist()) == [n_runs, n_runs], "load does not tell the two code versions apart"
    assert rows[rows.stage == "dense"].code_fingerprint.nunique() == 1
    # MP's scores all moved by 1e-12 keep their order: the same masks, and the same random streams
    # (RP's draw, fine-tuning order; keyed without the code), so every number is reproduced
    keys = ["strategy", "compression", "stage", "class"]
    old, new = (rows[(rows.stage != "dense") & (rows.code_fingerprint == f)] for f in pruned.index)
    both = old.merge(new, on=keys, suffixes=("_old", "_new"), validate="one_to_one")
    assert len(both) == len(old) and (both.recall_old == both.recall_new).all()
    assert all(re.fullmatch(r"[0-9a-f]{12}", f) for f in rows.code_fingerprint)


def test_every_core_module_a_run_uses_is_fingerprinted():
    """The fingerprinted modules are those the import graph reaches: a pruned run every core module
    experiment.tasks (the work of a run) imports, directly or not, and tasks itself; a dense model
    what data, models and train reach, and tasks, but not the pruning code."""
    from pruneflow.experiment import fingerprint, tasks

    tree = ast.parse(Path(tasks.__file__).read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 2:  # from .. / from ..x import
            names = [node.module] if node.module else [alias.name for alias in node.names]
            used |= {f"pruneflow.{n}" for n in names}
    assert {"pruneflow.devices", "pruneflow.train", "pruneflow.batched"} <= used
    assert used <= set(fingerprint.PRUNE_MODULES)
    assert "pruneflow.checks" in fingerprint.PRUNE_MODULES  # reached only through train and pruning
    dense = set(fingerprint.DENSE_MODULES)
    assert {"pruneflow.experiment.tasks", "pruneflow.devices", "pruneflow.metrics"} <= dense
    assert dense < set(fingerprint.PRUNE_MODULES)
    assert not dense & {"pruneflow.pruning", "pruneflow.strategies", "pruneflow.batched"}


def test_package_fingerprint_ignores_docstrings_not_code(tmp_path):
    """The whole package's fingerprint (the page cache's key for the code) moves with code only."""
    from pruneflow.experiment.fingerprint import package_fingerprint

    package = tmp_path / "pruneflow"
    shutil.copytree(ROOT / "pruneflow", package, ignore=shutil.ignore_patterns("__pycache__"))
    assert package_fingerprint(package) == package_fingerprint()
    strategies = package / "strategies.py"
    source = strategies.read_text()
    commented = source.replace(MP_LINE, "    # scores are |w|\n" + MP_LINE)
    strategies.write_text(commented.replace('"""MP:', '"""MP,'))
    assert package_fingerprint(package) == package_fingerprint()
    strategies.write_text(source.replace(MP_LINE, MP_LINE.replace(".abs()", ".abs() + 1e-12")))
    assert package_fingerprint(package) != package_fingerprint()

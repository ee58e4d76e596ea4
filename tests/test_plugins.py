"""A strategy registered by a plugin file runs everywhere a shipped one does: the CLI, the Dask
executor's workers and a notebook kernel of the book."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pruneflow.experiment import grid, results
from pruneflow.experiment.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = '''
"""Test plugin: SQ scores w^2 + 1e-3 * |w|^0.5 (ranks like MP, computed differently)."""
from pruneflow.strategies import STRATEGIES


@STRATEGIES.register("SQ")
def squared(weights, ctx):
    return {n: w.detach() ** 2 + 1e-3 * w.detach().abs().sqrt() for n, w in weights.items()}
'''


@pytest.fixture(scope="module")
def plugin_profile(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "sq_strategy.py").write_text(PLUGIN)
    spec = {
        "name": "plugged",
        "plugins": ["sq_strategy.py"],  # relative to the profile's folder
        "seeds": 2,
        "train": {"epochs": 2, "lr": 0.05},
        "finetune": {"epochs": 1, "lr": 0.01},
        "datasets": {"digits": {"model": "lenet300-100"}},
        "grids": {
            "strategy": {
                "datasets": ["digits"],
                "models": [{"name": "lenet300-100", "width": 0.125}],
                "strategies": ["MP", "SQ"],
                "ratios": [2, 10],
            }
        },
    }
    (folder / "plugged.yaml").write_text(yaml.safe_dump(spec))
    return folder / "plugged.yaml"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pruneflow", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_plugin_strategy_through_the_cli(plugin_profile):
    folder = plugin_profile.parent
    done = _cli("run", "--profile", "plugged.yaml", "--results", "results", "--quiet", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "8 runs - 8 computed" in done.stdout
    rows = results.load(folder / "results")
    sq = rows[rows.strategy == "SQ"]
    assert set(sq.status) == {"ok"} and sq.run_id.nunique() == 4
    assert set(sq.compression) == {2.0, 10.0}


def test_plugin_module_enters_the_fingerprint_of_its_runs_only(plugin_profile):
    profile = load_profile(plugin_profile)
    sq = next(r for r in profile.runs if r.strategy == "SQ")
    mp = next(r for r in profile.runs if r.strategy == "MP" and r.dense == sq.dense)
    assert sq.code != mp.code and sq.dense.code == mp.dense.code


@pytest.mark.slow
def test_plugin_strategy_through_the_dask_executor(plugin_profile, tmp_path):
    profile = load_profile(plugin_profile)  # from another working directory than the profile's
    grid.run(profile, tmp_path, only={"seed": "0", "strategy": "SQ"}, executor="dask", progress=False)
    frame = results.load(tmp_path)
    pruned = frame[frame.stage != "dense"]
    assert set(pruned.strategy) == {"SQ"} and set(pruned.status) == {"ok"} and pruned.run_id.nunique() == 2


@pytest.mark.slow
def test_plugin_strategy_through_the_q1_page(plugin_profile, tmp_path):
    import papermill

    folder = plugin_profile.parent
    grid.run(load_profile(plugin_profile), folder / "results", progress=False)  # a page only reads
    out = tmp_path / "q1.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "q1_strategy.ipynb"),
        str(out),
        parameters={
            "profile": str(plugin_profile),
            "results": str(folder / "results"),
            "strategies": ["MP", "SQ"],
        },
        cwd=str(tmp_path),
        progress_bar=False,
        kernel_name="python3",
    )
    outputs = json.dumps(json.loads(out.read_text())["cells"])
    assert "SQ" in outputs and "Traceback" not in outputs

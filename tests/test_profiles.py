"""Bad profiles fail before any work: exit code 2, a one-line message naming the file and the key
path (and the valid keys or choices), no traceback, and an untouched results folder."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from pruneflow.__main__ import main
from pruneflow.experiment.profiles import load_profile

GOOD = {
    "name": "ok",
    "seeds": 1,
    "train": {"epochs": 1, "lr": 0.05},
    "finetune": {"epochs": 1, "lr": 0.01},
    "datasets": {"digits": {"model": "lenet300-100"}},
    "grids": {"g": {"datasets": ["digits"], "strategies": ["MP"], "ratios": [2]}},
}


def edited(path: tuple, value) -> dict:
    """GOOD with the key at ``path`` set to ``value``."""
    spec = copy.deepcopy(GOOD)
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


def without(key: str) -> dict:
    """GOOD without its top-level ``key``."""
    return {k: v for k, v in GOOD.items() if k != key}


CASES = {  # id: (YAML text, or a spec to dump; regexes the message must match)
    "no train section": (
        without("train"),
        [r"grids.g: training of 'digits' has no 'epochs' or 'lr'", "train:"],
    ),
    "negative momentum": (
        edited(("train", "momentum"), -5),
        [r"grids.g: momentum must be a finite number >= 0"],
    ),
    "infinite momentum": (
        edited(("train", "momentum"), float("inf")),
        [r"momentum must be a finite number >= 0, got inf"],
    ),
    "empty file": ("", ["empty file"]),
    "malformed YAML": ("name: x\ngrids: {g: [unclosed\n", ["malformed YAML at line 3"]),
    "not a mapping": ("- a\n- b\n", ["profile is a mapping", "got a list"]),
    "unknown top key": (edited(("gridz",), {}), ["top level: unknown key 'gridz'", "valid keys: name,"]),
    "grids as a list": (edited(("grids",), [{"datasets": ["digits"]}]), ["grids: expected a mapping"]),
    "typo in a grid key": (
        edited(("grids", "g", "stratgies"), ["UP"]),
        ["grids.g: unknown key 'stratgies'", "valid keys: datasets, models, strategies"],
    ),
    "string for a list": (
        edited(("grids", "g", "strategies"), "UP"),
        ["grids.g.strategies: expected a list"],
    ),
    "typo in a train key": (edited(("train", "lrr"), 0.1), ["train: unknown key 'lrr'", "weight_decay"]),
    "typo in a per-dataset train key": (
        edited(("datasets", "digits", "train"), {"epoch": 2}),
        ["datasets.digits.train: unknown key 'epoch'"],
    ),
    "typo in a grid's train key": (
        edited(("grids", "g", "train"), {"epoch": 2}),
        ["grids.g.train: unknown key 'epoch'", "valid keys: epochs, lr"],
    ),
    "bad precision in a grid's train": (
        edited(("grids", "g", "train"), {"precision": "fp8"}),
        ["grids.g.train.precision: unknown precision 'fp8'", "'fp32', 'bf16', 'auto'"],
    ),
    "wrong type": (edited(("seeds",), "three"), ["seeds: expected an integer", "'three'"]),
    "bool for a number": (edited(("train", "lr"), True), ["train.lr: expected a number"]),
    "ratio not a number": (
        edited(("grids", "g", "ratios"), [2, "x"]),
        [r"grids.g.ratios\[1\]: expected a number"],
    ),
    "unknown strategy": (
        edited(("grids", "g", "strategies"), ["ZZ"]),
        [r"grids.g.strategies\[0\]: unknown strategy 'ZZ'", "'MP', 'GP'"],
    ),
    "unknown dataset": (
        edited(("datasets", "nope"), {}),
        ["datasets: unknown dataset 'nope'", "'digits'"],
    ),
    "model without a name": (
        edited(("grids", "g", "models"), [{"width": 0.5}]),
        [r"grids.g.models\[0\]: a model mapping needs a 'name'"],
    ),
    "unknown pruning key": (edited(("pruning",), {"grad_batch": 1}), ["pruning: unknown key 'grad_batch'"]),
    "missing plugin file": (
        edited(("plugins",), ["nowhere/plug.py"]),
        ["plugins: plugin file '/.*/nowhere/plug.py' not found"],
    ),
    "missing plugin module": (
        edited(("plugins",), ["no_such_pkg.mod"]),
        ["plugins: plugin module 'no_such_pkg.mod'"],
    ),
    "negative seeds": (edited(("seeds",), -1), ["seeds must be a positive number"]),
    "bad learning rate": (edited(("train", "lr"), -1), [r"grids.g: need epochs >= 0.*lr > 0"]),
    "typo in a grid's fine-tuning key": (
        edited(("grids", "g", "finetune"), {"epoch": 2}),
        ["grids.g.finetune: unknown key 'epoch'", "valid keys: epochs, lr, lr_steps"],
    ),
    "grid fine-tuning epochs not an integer": (
        edited(("grids", "g", "finetune"), {"epochs": "ten"}),
        ["grids.g.finetune.epochs: expected an integer", "'ten'"],
    ),
    "grid fine-tuning steps not summing to its epochs": (
        edited(("grids", "g", "finetune"), {"epochs": 25, "lr_steps": [[10, 1], [5, 0.1]]}),
        ["grids.g: lr_steps must be .* summing to epochs", "epochs=25"],
    ),
    "fine-tuning steps not summing to its epochs": (
        edited(("finetune", "lr_steps"), [[2, 1]]),
        ["grids.g: lr_steps must be .* summing to epochs", "epochs=1"],
    ),
}


@pytest.mark.parametrize(("text", "patterns"), CASES.values(), ids=CASES.keys())
def test_bad_profile_exits_2_naming_file_and_key(tmp_path, capsys, text, patterns):
    profile = tmp_path / "bad.yaml"
    profile.write_text(text if isinstance(text, str) else yaml.safe_dump(text))
    out = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", str(profile), "--results", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(profile) in err, err
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)
    assert not out.exists(), "the results folder was touched"


def test_missing_profile_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", str(tmp_path / "absent.yaml"), "--results", str(tmp_path / "r")])
    assert exit_.value.code == 2
    assert f"{tmp_path / 'absent.yaml'}: cannot read the profile" in capsys.readouterr().err


def test_paper_without_data_names_every_missing_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRUNEFLOW_DATA", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", "paper", "--results", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
        assert f"'{name}'" in err
    assert str(tmp_path / "data") in err and "download=True" in err
    assert not (tmp_path / "r").exists()


def test_a_grid_trains_with_its_own_schedule_over_the_dataset_and_profile_ones(tmp_path):
    """grids.<g>.train overrides datasets.<d>.train, which overrides train; other grids keep theirs."""
    spec = edited(("datasets", "digits", "train"), {"epochs": 3, "batch_size": 64})
    spec["grids"]["own"] = {**spec["grids"]["g"], "train": {"epochs": 5, "lr": 0.1}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    profile = load_profile(path)
    (plain,), (own,) = ({r.dense.train for r in profile.grids[g]} for g in ("g", "own"))
    assert (plain.epochs, plain.lr, plain.batch_size) == (3, 0.05, 64)
    assert (own.epochs, own.lr, own.batch_size) == (5, 0.1, 64)


def test_shipped_profiles_are_valid():
    for name in ("smoke", "quick", "paper"):
        assert load_profile(name).runs


def test_repeated_only_means_any_value_and_no_match_lists_values(tmp_path, capsys):
    from pruneflow.experiment.grid import select

    runs = load_profile("smoke").runs
    both = select(runs, {"seed": ["0", "1"], "strategy": ["MP"]})
    assert {r.dense.seed for r in both} == {0, 1} and {r.strategy for r in both} == {"MP"}
    assert len(both) == len(select(runs, {"seed": "0", "strategy": "MP"})) * 2
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", "smoke", "--results", str(tmp_path / "r"), "--only", "seed=7"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "seed: 0, 1, 2" in err and "strategy: MP, GP, UP, RP" in err


def test_scheduler_with_local_executor_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--results", str(tmp_path), "--executor", "local", "--scheduler", "tcp://h:8786"])
    assert exit_.value.code == 2 and "--scheduler needs --executor dask" in capsys.readouterr().err

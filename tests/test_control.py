"""The t = 1 control: per dense model, a run fine-tuned with the same schedule and nothing pruned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from pruneflow.experiment import tasks
from pruneflow.experiment.config import CONTROL, PruneConfig
from pruneflow.experiment.profiles import parse
from pruneflow.experiment.results import Store
from pruneflow.masks import prunable_weights
from pruneflow.report import claims, paper, tables
from pruneflow.train import fit
from tests.test_grid import run_rows, tiny_spec


def test_control_runs_once_per_dense_model_unpruned_and_fine_tuned(tmp_path) -> None:
    spec = parse(tiny_spec(control=True))
    controls = [r for r in spec.runs if r.strategy == CONTROL]
    assert len(controls) == len(spec.dense) == 2 and {r.compression for r in controls} == {1.0}
    assert all(c.finetune == r.finetune for c in controls for r in spec.runs if r.dense == c.dense)
    frame = run_rows(spec, tmp_path)
    control = frame[frame.strategy == CONTROL]
    assert set(control.stage) == {"pruned", "finetuned"} and (control.status == "ok").all()
    assert (control[["compression", "compression_prunable", "compression_all"]] == 1.0).all().all()
    dense = frame[frame.stage == "dense"].set_index(["dense_id", "class"]).recall
    before = control[control.stage == "pruned"].set_index(["dense_id", "class"]).recall
    assert before.equals(dense.loc[before.index])  # "pruned" at t = 1 is the dense model itself


def test_control_keeps_every_weight_nonzero(digits, tmp_path) -> None:
    spec = parse(tiny_spec(control=True))
    run = next(r for r in spec.runs if r.strategy == CONTROL)
    model = tasks.build_model(run.dense, digits, torch.device("cpu"))
    fit(model, digits, run.dense.train, seed=0)
    common = {**tasks._run_fields(run), **tasks._common(run.dense, model, torch.device("cpu"))}
    ctx = tasks.RunContext(Store(tmp_path), torch.device("cpu"))
    pruned = tasks._prune_step(run, common, model, digits, ctx, 0.0)
    assert all(m.all() for m in pruned.masks.values())
    seed = tasks.stream_seed(tasks.Stream.FINETUNE, run.streams)
    fit(pruned.model, digits, run.finetune, seed=seed, mask=pruned.masks)
    assert all((w != 0).all() for w in prunable_weights(pruned.model).values())
    assert not all(
        torch.equal(a, b) for a, b in zip(model.parameters(), pruned.model.parameters(), strict=True)
    )


def test_control_must_have_compression_one() -> None:
    dense = parse(tiny_spec()).dense[0]
    with pytest.raises(ValueError, match="compression 1"):
        PruneConfig(dense, CONTROL, 2)
    with pytest.raises(ValueError, match="compression must be"):
        PruneConfig(dense, "MP", 1)


def test_alpha_against_control_uses_the_controls_bbar(tmp_path) -> None:
    """against_control's alpha_hat = sum(b_ctl b_t) / sum(b_ctl^2), by hand from the rows."""
    frame = run_rows(parse(tiny_spec(control=True)), tmp_path)
    table = tables.intensification(frame)
    got = paper.against_control(table).set_index("run_id").alpha_hat
    assert len(got) == 2 * 2 * 2  # 2 seeds x MP, RP x 2 ratios
    ctl = table[table.strategy == CONTROL].set_index(["dense_id", "class"]).bbar
    for run_id, run in table[table.strategy != CONTROL].groupby("run_id"):
        ref = ctl.loc[list(zip(run.dense_id, run["class"], strict=True))].to_numpy()
        assert got[run_id] == pytest.approx(np.sum(ref * run.bbar.to_numpy()) / np.sum(ref**2))
    vs_dense = paper.control_vs_dense(table)
    assert len(vs_dense) == 2 and (vs_dense.compression == 1).all()


def test_claims_against_a_control_that_did_not_train_equal_the_claims_against_dense(tmp_path) -> None:
    """With 0 fine-tuning epochs the control is its dense model, so every pruned run's alpha_hat
    against the control, and the verdicts of the intensification claims, are those against dense."""
    spec = tiny_spec(control=True, seeds=3)
    spec["finetune"] = {"epochs": 0, "lr": 0.01}
    frame = run_rows(parse(spec), tmp_path)
    dense, control = claims.per_run(frame), paper.control_runs(tables.intensification(frame))
    both = dense.merge(control, on="run_id", suffixes=("", "_ctl"), validate="one_to_one")
    assert len(both) == len(dense) == 3 * 2 * 2
    np.testing.assert_allclose(both.alpha_hat_ctl, both.alpha_hat, rtol=1e-12)
    np.testing.assert_allclose(both.dense_accuracy_ctl, both.dense_accuracy, rtol=0)
    keys = ("high", "low", "rp_alpha")
    a, b = (claims.evaluate(r, claims=keys, resamples=0, high=10, low=2) for r in (dense, control))
    assert list(a.claim) == list(keys)
    pd.testing.assert_frame_equal(a, b)


def test_control_by_dataset_matches_a_t_interval_over_the_controls(tmp_path) -> None:
    frame = run_rows(parse(tiny_spec(control=True, seeds=3)), tmp_path)
    table = tables.intensification(frame)
    got = paper.control_by_dataset(table, level=0.99).set_index("dataset").loc["digits"]
    alphas = paper.control_vs_dense(table).alpha_hat.to_numpy()
    low, high = stats.t.interval(0.99, len(alphas) - 1, alphas.mean(), stats.sem(alphas))
    assert got.models == 3 and got.alpha_hat == pytest.approx(alphas.mean())
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high))
    assert got.mark == (">" if low > 1 else "<" if high < 1 else "?")

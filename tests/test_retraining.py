"""Issue 19, pruning or retraining: the paper's long fine-tuning, its control, the grid-level
fine-tuning override, the dense models' stored histories, and alpha_hat against the control on a
simulation with a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pruneflow import data
from pruneflow.experiment import grid, results
from pruneflow.experiment import tasks as tasks_module
from pruneflow.experiment.config import CONTROL, DenseConfig
from pruneflow.experiment.profiles import load_profile, parse
from pruneflow.experiment.results import Store
from pruneflow.experiment.tasks import RunContext, prune_run, train_dense
from pruneflow.masks import prunable_weights
from pruneflow.report import retraining, tables
from pruneflow.train import Schedule, fit

PAPER_FINETUNE = {"epochs": 25, "lr": 0.1, "lr_steps": [[10, 1], [5, 0.1], [5, 0.01], [5, 0.001]]}
SPEC = {
    "name": "retraining-test",
    "seeds": 1,
    "train": {"epochs": 3, "lr": 0.05, "validation": 0.2},
    "finetune": {"epochs": 1, "lr": 0.01},
    "datasets": {"digits": {"model": "lenet300-100", "finetune": {"epochs": 2}}},
    "grids": {
        "short": {
            "datasets": ["digits"],
            "models": [{"name": "lenet300-100", "width": 0.125}],
            "ratios": [2],
        },
        "long": {
            "datasets": ["digits"],
            "models": [{"name": "lenet300-100", "width": 0.125}],
            "ratios": [2],
            "control": True,
            "finetune": PAPER_FINETUNE,
        },
    },
}


def test_grid_finetune_overrides_profile_and_dataset_on_the_same_dense_models() -> None:
    profile = parse(SPEC)
    (short,), (control, long) = profile.grids["short"], profile.grids["long"]
    assert (short.finetune_epochs, short.finetune_lr, short.finetune_lr_steps) == (2, 0.01, ())  # dataset's
    assert (long.finetune_epochs, long.finetune_lr) == (25, 0.1)
    assert long.finetune_lr_steps == ((10, 1.0), (5, 0.1), (5, 0.01), (5, 0.001))
    assert control.strategy == CONTROL and control.finetune == long.finetune
    assert short.dense == long.dense and short.id != long.id  # one dense model, two runs


def test_quicks_retraining_grid_has_the_papers_per_epoch_learning_rates(monkeypatch) -> None:
    """The lr of every step of quick's long fine-tuning, per epoch, equals torch's MultiStepLR
    (milestones 10, 15, 20; gamma 0.1) from 0.1, stepped once per epoch (the authors' schedule)."""
    run = load_profile("quick").grids["retraining"][0]
    schedule = run.finetune
    gen = torch.Generator().manual_seed(0)
    toy = data.Dataset(
        "toy", "toy", torch.randn(64, 8, generator=gen), torch.arange(64) % 2, None, None, 2, False
    )
    model = torch.nn.Sequential(torch.nn.Linear(8, 2))
    seen: list[float] = []
    step = torch.optim.SGD.step

    def recording(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording)
    fit(model, toy, Schedule(schedule.epochs, schedule.lr, batch_size=32, lr_steps=schedule.lr_steps), seed=0)
    monkeypatch.undo()
    reference_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    reference = torch.optim.lr_scheduler.MultiStepLR(reference_opt, milestones=[10, 15, 20], gamma=0.1)
    expected = []
    for _ in range(25):
        expected.append(reference_opt.param_groups[0]["lr"])
        reference_opt.step()
        reference.step()
    per_epoch = np.array(seen).reshape(25, 2)  # 64 examples in batches of 32: 2 steps per epoch
    assert per_epoch[:, 0] == pytest.approx(per_epoch[:, 1])
    assert per_epoch[:, 0] == pytest.approx(expected, rel=1e-12)


def test_control_under_the_long_schedule_keeps_every_weight(tmp_path, monkeypatch) -> None:
    """The t = 1 control, fine-tuned with the paper's 25 epochs: compression 1 on both bases, its
    mask keeps everything, and every weight of the fine-tuned model is nonzero."""
    control = parse(SPEC).grids["long"][0]
    dataset = data.load("digits")
    ctx = RunContext(Store(tmp_path), torch.device("cpu"))
    model, dense_rows, _ = train_dense(control.dense, dataset, ctx)
    tuned = []
    real_fit = tasks_module.fit

    def recording(m, d, schedule, *, seed, mask=None):
        history = real_fit(m, d, schedule, seed=seed, mask=mask)
        tuned.append((m, mask, schedule))
        return history

    monkeypatch.setattr(tasks_module, "fit", recording)
    rows = prune_run(control, model, dataset, pd.DataFrame(dense_rows), ctx)
    assert {r["status"] for r in rows} == {"ok"}
    assert {(r["compression"], r["compression_prunable"], r["compression_all"]) for r in rows} == {(1, 1, 1)}
    ((tuned_model, mask, schedule),) = tuned
    assert schedule.epochs == 25 and schedule.lr_steps[0] == (10, 1.0)
    assert all(bool(m.all()) for m in mask.values())
    for name, weight in prunable_weights(tuned_model).items():
        assert torch.count_nonzero(weight) == weight.numel(), name
    first = next(iter(prunable_weights(model)))
    assert not torch.equal(prunable_weights(tuned_model)[first], prunable_weights(model)[first])  # trained


def test_dense_history_is_stored_in_the_dense_file_and_collected(tmp_path) -> None:
    """The history collect returns is the one fit returned (retrained here for reference), per epoch,
    and it lives in the dense model's Parquet file (no other file beside it and its weights)."""
    profile = parse(SPEC)
    grid.run(profile, tmp_path, progress=False, workers=1)
    found = results.collect(tmp_path, profile.runs)
    (dense,) = profile.dense
    history = found.history[found.history.dense_id == dense.id]
    assert list(history.epoch) == [1, 2, 3] and {"dataset", "seed"} <= set(history.columns)
    _, _, reference = train_dense(
        dense, data.load("digits"), RunContext(Store(tmp_path / "x"), torch.device("cpu"))
    )
    assert list(history.train_loss) == pytest.approx(list(reference), abs=0)
    assert list(history.validation_loss) == pytest.approx(reference.validation, abs=0)
    assert sorted(p.suffix for p in (tmp_path / "dense").iterdir()) == [".parquet", ".pt"]
    no_validation = DenseConfig("digits", "lenet300-100", 0, Schedule(2, 0.05), 0.125)
    store = Store(tmp_path / "plain")
    _, rows, plain = train_dense(no_validation, data.load("digits"), RunContext(store, torch.device("cpu")))
    store.write(no_validation, rows, plain)
    read = results.history([results._read(store.path(no_validation))])
    assert len(read) == 2 and read.validation_loss.isna().all() and plain.best_epoch == 2


def _simulated(
    k: float, seeds: int = 30, classes: int = 10, noise: float = 0.004, seed: int = 0
) -> pd.DataFrame:
    """Tidy rows of ``seeds`` dense models, each with a control whose every class's Bbar is k times
    the dense model's (retraining) and MP and GP runs at t = 2 and 4 with the control's Bbar (pruning
    changes nothing), each measured with independent noise of sd ``noise`` on recall."""
    rng = np.random.default_rng(seed)
    rows = []
    accuracy = 0.8
    for s in range(seeds):
        bbar = rng.normal(0, 0.1, classes)
        bbar -= bbar.mean()
        dense_id = f"d{s}"
        cells = [("dense", None, 1.0, bbar, dense_id), ("finetuned", CONTROL, 1.0, k * bbar, f"c{s}")]
        cells += [
            ("finetuned", strategy, t, k * bbar, f"{strategy}{s}-{t}")
            for strategy in ("MP", "GP")
            for t in (2.0, 4.0)
        ]
        for stage, strategy, t, truth, run_id in cells:
            recall = accuracy * (1 + truth) + rng.normal(0, noise, classes)
            recall += accuracy - recall.mean()  # balanced classes: accuracy is the mean recall
            rows += [
                dict(
                    run_id=run_id,
                    dense_id=dense_id,
                    dataset="sim",
                    model="m",
                    width=1.0,
                    n_params=1,
                    seed=s,
                    strategy=strategy,
                    compression=t,
                    basis="prunable",
                    stage=stage,
                    status="ok",
                    **{"class": c},
                    support=100,
                    recall=float(r),
                    accuracy=accuracy,
                )
                for c, r in enumerate(recall)
            ]
    return pd.DataFrame(rows)


def test_simulated_retraining_effect_is_k_against_dense_and_1_against_control() -> None:
    k = 0.75
    runs = retraining.per_run(tables.intensification(_simulated(k)), retraining.LONG)
    summary = retraining.summary(runs)
    pruned = summary[summary.strategy != CONTROL]
    assert len(pruned) == 8  # MP and GP at t = 2, 4 against each reference
    for row in pruned.itertuples():
        truth = k if row.reference == "dense" else 1.0
        assert row.ci_low <= truth <= row.ci_high, (row.reference, row.compression, row.alpha_hat)
        assert not row.ci_low <= (1.0 if row.reference == "dense" else k) <= row.ci_high
    control = retraining.control_change(runs)
    assert control.ci_low.iloc[0] <= k <= control.ci_high.iloc[0]
    paired = retraining.pruned_minus_control(runs)
    assert (paired.alpha_hat_low <= 0).all() and (paired.alpha_hat_high >= 0).all()
    verdicts = retraining.claims_table(runs, ["low"], resamples=0)
    against = verdicts.set_index("reference").verdict
    assert against["dense"] == "supported" and against["control"] == "equivalent"
    assert "the retraining's, not pruning's" in retraining.meaning(verdicts, control)

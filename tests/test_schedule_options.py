"""Schedule options for the paper's protocol: step learning rates and best-validation-loss selection."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import pruneflow.train as train
from pruneflow.data import Dataset
from pruneflow.devices import seeded
from pruneflow.experiment.config import DenseConfig, PruneConfig, from_dict, to_dict
from pruneflow.models import build
from pruneflow.train import Schedule, fit, lr_factor, validation_split


def noisy_dataset() -> Dataset:
    """120 random 20-d points with random labels: a model can only memorise, so held-out loss rises."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(140, 20, generator=gen), torch.randint(0, 3, (140,), generator=gen)
    return Dataset("noise", "noise", x[:120], y[:120], x[120:], y[120:], 3, False)


def test_best_validation_loss_epoch_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit(validation=0.25) returns the weights of the epoch with the lowest validation loss."""
    data = noisy_dataset()
    with seeded(0):
        model = build("lenet300-100", (20,), 3, width=0.5)
    seen: list[tuple[float, dict[str, torch.Tensor]]] = []
    measure = train.validation_loss

    def recording(m, x, y):
        loss = measure(m, x, y)
        seen.append((loss, {k: v.clone() for k, v in m.state_dict().items()}))
        return loss

    monkeypatch.setattr(train, "validation_loss", recording)
    fit(model, data, Schedule(epochs=12, lr=0.2, weight_decay=0.0, batch_size=16, validation=0.25), seed=0)
    losses = [loss for loss, _ in seen]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert len(seen) == 12 and best < 11, f"the toy must overfit; validation losses {losses}"
    assert all(torch.equal(v, seen[best][1][k]) for k, v in model.state_dict().items())
    held = data.y_train[validation_split(120, 0.25)[1]]
    assert losses[best] == pytest.approx(measure(model, data.x_train[validation_split(120, 0.25)[1]], held))


def test_validation_split_is_fixed_disjoint_and_sized() -> None:
    tr, val = validation_split(100, 0.2)
    assert len(val) == 20 and len(tr) == 80 and set(tr.tolist()).isdisjoint(val.tolist())
    assert torch.equal(val, validation_split(100, 0.2)[1])


def test_step_schedule_factors_follow_the_stages() -> None:
    """(2, 0.1), (3, 1) at 4 steps per epoch: factor 0.1 for steps 0-7, 1 for steps 8-19."""
    factor = lr_factor(Schedule(epochs=5, lr=0.1, lr_steps=((2, 0.1), (3, 1))), 4)
    assert [factor(k) for k in (0, 7, 8, 19)] == [0.1, 0.1, 1.0, 1.0]
    with pytest.raises(ValueError, match="lr_steps"):
        Schedule(epochs=6, lr=0.1, lr_steps=((2, 0.1), (3, 1)))


def test_fine_tuning_step_schedule_is_part_of_a_runs_identity() -> None:
    """finetune_lr_steps reaches the fine-tuning Schedule, renames the run, and survives a JSON trip."""
    dense = DenseConfig("digits", "lenet300-100", 0, Schedule(epochs=2, lr=0.05))
    cosine = PruneConfig(dense, "MP", 2, finetune_epochs=4, finetune_lr=0.1)
    stepped = dataclasses.replace(cosine, finetune_lr_steps=[[2, 1], [2, 0.1]])
    assert cosine.finetune.lr_steps == () and stepped.finetune.lr_steps == ((2, 1.0), (2, 0.1))
    assert stepped.id != cosine.id
    again = from_dict(json.loads(json.dumps(to_dict(stepped))))
    assert again == stepped and again.id == stepped.id and hash(again) == hash(stepped)
    with pytest.raises(ValueError, match="lr_steps"):
        dataclasses.replace(cosine, finetune_lr_steps=[[3, 1]])

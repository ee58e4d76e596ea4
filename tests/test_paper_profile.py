"""The `paper` profile expands to the paper's sub-grids (Section 6 of Good et al., 2022)."""

from __future__ import annotations

from collections import Counter

import pytest

from pruneflow.experiment.config import CONTROL
from pruneflow.experiment.profiles import load_profile

RATIOS = {2.0, 4.0, 10.0, 20.0, 50.0}


def test_paper_profile_expands_to_the_papers_sub_grids() -> None:
    profile = load_profile("paper")
    strategy, size, dataset, authors = (
        profile.grids[g] for g in ("strategy", "model_size", "difficulty", "authors")
    )
    # CIFAR-10/ResNet-56, MP GP UP RP + the authors' RP, and the t = 1 control of each model
    assert len(strategy) == 5 * 5 * 30 + 30
    assert Counter(r.strategy for r in strategy)[CONTROL] == 30
    # the authors' UP, and MP and UP matched to its count (issue 18), on the same dense models
    assert Counter(r.label for r in authors) == {
        "UP-authors": 150,
        "MP@UP-authors": 150,
        "UP@UP-authors": 150,
    }
    assert {r.dense for r in authors} == {r.dense for r in strategy}
    assert {(r.dense.dataset, r.dense.model) for r in strategy} == {("cifar10", "resnet56")}
    assert len(size) == 5 * 2 * 5 * 30  # ResNet-20..110 x {MP, UP} x 5 ratios x 30 models
    assert Counter(r.dense.model for r in size) == {f"resnet{d}": 300 for d in (20, 32, 44, 56, 110)}
    assert len(dataset) == 4 * 5 * 30
    assert {(r.dense.dataset, r.dense.model) for r in dataset} == {
        ("mnist", "lenet5"),
        ("fashion_mnist", "lenet5"),
        ("cifar10", "resnet56"),
        ("cifar100", "resnet56"),
    }
    pruned = [r for r in profile.runs if r.strategy != CONTROL]
    assert {r.compression for r in pruned} == RATIOS and {r.basis for r in profile.runs} == {"all"}
    # the same dense models at every ratio and across grids: 5 ResNets + 3 other datasets, 30 seeds each
    assert len(profile.dense) == (5 + 3) * 30
    # inclusion-exclusion: CIFAR-10/ResNet-56 MP and UP lie in several grids
    assert len(profile.runs) == 780 + 1500 + 600 - 300 - 150 - 150 + 150 + 450


def test_paper_profile_schedules() -> None:
    profile = load_profile("paper")
    lenet = next(r for r in profile.runs if r.dense.model == "lenet5")
    resnet = next(r for r in profile.runs if r.dense.model == "resnet56")
    constant = (30, 0.01, ((30, 1.0),))  # "SGD for 30 epochs, lr 0.01"
    assert (lenet.dense.train.epochs, lenet.dense.train.lr, lenet.dense.train.lr_steps) == constant
    assert (lenet.finetune.epochs, lenet.finetune.lr, lenet.finetune.lr_steps) == (15, 0.01, ((15, 1.0),))
    # the authors' script: 10 epochs at 0.01, 20 at 0.1, then 10 each at 0.01, 0.001, 0.0001
    lrs = [resnet.dense.train.lr * f for e, f in resnet.dense.train.lr_steps for _ in range(e)]
    assert lrs == pytest.approx([0.01] * 10 + [0.1] * 20 + [0.01] * 10 + [0.001] * 10 + [0.0001] * 10)
    # ... and fine-tunes 10 epochs at 0.1, then 5 each at 0.01, 0.001, 0.0001
    lrs = [resnet.finetune.lr * f for e, f in resnet.finetune.lr_steps for _ in range(e)]
    assert lrs == pytest.approx([0.1] * 10 + [0.01] * 5 + [0.001] * 5 + [0.0001] * 5)
    assert resnet.dense.train.validation == lenet.finetune.validation == 0.1
    assert resnet.dense.train.weight_decay == 5e-4

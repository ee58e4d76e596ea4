"""Grid specs ("profiles") as YAML data: named sub-grids of datasets, models, strategies, ratios
and bases, over ``seeds`` independently trained models, with shared training defaults.

Shipped profiles live in ``pruneflow/experiment/profiles/<name>.yaml``; any other YAML path works too::

    name: quick
    seeds: 10                     # seeds 0..9
    train: {epochs: 20, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4, batch_size: 128}
    finetune: {epochs: 5, lr: 0.01}
    pruning: {basis: prunable, grad_batches: 1, grad_batch_size: 128}
    datasets:                     # per-dataset default model and training overrides
      digits: {model: lenet300-100, train: {epochs: 30}}
    grids:
      strategy:                   # a cartesian product; omitted keys take the defaults
        datasets: [digits]
        strategies: [MP, GP, UP, RP]
        ratios: [2, 4, 10, 20, 50]
      model_size:
        datasets: [digits]
        models: [{name: lenet300-100, width: 0.5}, lenet300-100]
        strategies: [MP]
        bases: [prunable, all]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data import DATASETS
from ..registry import check_choice
from ..train import Schedule
from .config import CONTROL, DenseConfig, PruneConfig

DEFAULT_RATIOS = (2, 4, 10, 20, 50)


def shipped() -> list[str]:
    """Names of the profiles shipped with the package."""
    folder = resources.files("pruneflow.experiment") / "profiles"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


@dataclass(frozen=True)
class Profile:
    """A validated grid: its name, description, raw spec and every run it asks for."""

    name: str
    description: str
    spec: dict[str, Any]
    grids: dict[str, tuple[PruneConfig, ...]]

    @property
    def runs(self) -> list[PruneConfig]:
        """Every pruned run, each once, in grid order."""
        return list(dict.fromkeys(itertools.chain.from_iterable(self.grids.values())))

    def subset(self, *grids: str) -> Profile:
        """The same profile restricted to the named grids."""
        for name in grids:
            check_choice("grid", name, list(self.grids))
        return Profile(self.name, self.description, self.spec, {g: self.grids[g] for g in grids})

    @property
    def dense(self) -> list[DenseConfig]:
        """Every dense model the runs start from, each once."""
        return list(dict.fromkeys(run.dense for run in self.runs))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (``smoke``, ``quick``, ``paper``) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        check_choice("profile", str(name_or_path), shipped())
        text = (resources.files("pruneflow.experiment") / "profiles" / f"{name_or_path}.yaml").read_text()
    else:
        text = path.read_text()
    return parse(yaml.safe_load(text))


def parse(spec: dict[str, Any]) -> Profile:
    """Validate a spec and expand its grids; raises ``ValueError`` before any work is done."""
    seeds = spec.get("seeds", 1)
    if not (isinstance(seeds, int) and seeds >= 1):
        raise ValueError(f"seeds must be a positive number of models per cell, got {seeds!r}")
    datasets = spec.get("datasets") or {}
    for name in datasets:
        check_choice("dataset", name, DATASETS.names())
    grids = {}
    for grid_name, grid in (spec.get("grids") or {}).items():
        runs = tuple(_expand(spec, datasets, grid, seeds))
        if not runs:
            raise ValueError(f"grid {grid_name!r} is empty: every list in it needs at least one entry")
        grids[grid_name] = runs
    if not grids:
        raise ValueError("the profile has no grid: add at least one entry under 'grids'")
    return Profile(spec.get("name", "custom"), spec.get("description", ""), spec, grids)


def _expand(spec: dict[str, Any], datasets: dict[str, Any], grid: dict[str, Any], seeds: int):
    pruning = {"basis": "prunable", "grad_batches": 1, "grad_batch_size": 128, **spec.get("pruning", {})}
    controlled: set[DenseConfig] = set()
    for dataset in grid.get("datasets", list(datasets)):
        check_choice("dataset", dataset, DATASETS.names())
        per_dataset = datasets.get(dataset) or {}
        finetune = {**spec.get("finetune", {}), **per_dataset.get("finetune", {})}
        train = Schedule(**{**spec.get("train", {}), **per_dataset.get("train", {})})
        models = grid.get("models", [per_dataset.get("model")])
        epochs, lr = finetune.get("epochs", 10), finetune.get("lr", 0.01)
        for model, seed, strategy, ratio, basis in itertools.product(
            models,
            range(grid.get("seeds", seeds)),
            grid.get("strategies", ["MP"]),
            grid.get("ratios", DEFAULT_RATIOS),
            grid.get("bases", [pruning["basis"]]),
        ):
            if model is None:
                raise ValueError(
                    f"dataset {dataset!r} has no default model: give 'models' or datasets.{dataset}.model"
                )
            name, width = (
                (model, 1.0) if isinstance(model, str) else (model["name"], float(model.get("width", 1)))
            )
            dense = DenseConfig(dataset, name, seed, train, width)
            if grid.get("control") and dense not in controlled:  # once per dense model
                controlled.add(dense)
                yield PruneConfig(dense, CONTROL, 1, basis, finetune_epochs=epochs, finetune_lr=lr)
            yield PruneConfig(
                dense,
                strategy,
                ratio,
                basis,
                pruning["grad_batches"],
                pruning["grad_batch_size"],
                epochs,
                lr,
            )

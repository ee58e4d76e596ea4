"""Grid specs ("profiles") as YAML data: named sub-grids of datasets, models, strategies, ratios
and bases, over ``seeds`` independently trained models, with shared training defaults.

Shipped profiles live in ``pruneflow/experiment/profiles/<name>.yaml``; any other YAML path works too.
Every key is checked against :data:`SCHEMA` before anything runs; ``plugins`` names modules or
``.py`` files (relative to the profile's folder) imported first, so that the strategies, datasets
and models they register can be named::

    name: quick
    plugins: [my_package.my_strategies, path/to/file.py]   # optional
    seeds: 10                     # seeds 0..9
    train: {epochs: 20, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4, batch_size: 128,
            precision: auto}      # fp32 (default), bf16, or auto: see below
    finetune: {epochs: 5, lr: 0.01}   # or a step schedule: lr_steps: [[3, 1], [2, 0.1]];
                                      # precision: as train's (default: the dense training's)
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
      conv:                       # a grid's own dense training (over the profile's and the dataset's)
        datasets: [digits]
        models: [{name: resnet20, width: 0.5}]
        train: {epochs: 10}
      authors:                    # a matched run: STRATEGY@MATCH (see below)
        datasets: [digits]
        strategies: [UP-authors, MP@UP-authors, UP@UP-authors]
      retraining:                 # a grid's own fine-tuning, over the profile's and the dataset's
        datasets: [digits]
        strategies: [MP]
        control: true
        finetune: {epochs: 25, lr: 0.1, lr_steps: [[10, 1], [5, 0.1], [5, 0.01], [5, 0.001]]}

A strategy ``S@M`` (e.g. ``MP@UP-authors``) is a matched run: ``S`` ranks its scores as always but
keeps exactly as many weights as the mask-drawing strategy ``M`` (``RP-bernoulli``, ``UP-authors``)
keeps at the same asked ratio and basis on the same dense model (:attr:`.config.PruneConfig.match`);
its rows carry ``S@M`` as their strategy, the asked ratio as ``compression`` and the realised ratio
on both bases, and ``--only strategy=MP@UP-authors`` selects it.

``precision: auto`` is resolved when the profile is loaded, for the machine at hand
(:func:`pruneflow.devices.resolve_precision`): ``bf16`` (autocast, weights and optimizer state in
fp32) where the default device has native bf16 matrix instructions, ``fp32`` elsewhere. The
resolved value is what enters each run's config and hash, so a bf16 run is never read back as fp32.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data import DATA_ENV, DATASETS, available, data_root
from ..devices import resolve_precision
from ..models import MODELS
from ..pruning import BASES
from ..registry import check_choice
from ..strategies import STRATEGIES
from ..train import PRECISIONS, Schedule
from .config import CONTROL, MATCH, DenseConfig, PruneConfig, parse_label
from .plugins import import_plugins

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


class ProfileError(ValueError):
    """A profile that cannot be read or does not fit the schema; the message names file and key."""


Schema = Any  # a leaf type name, a [item] list, a {key: schema} mapping, or ("map", schema[, key leaf])
SCHEDULE = {
    "epochs": "int",
    "lr": "number",
    "momentum": "number",
    "weight_decay": "number",
    "batch_size": "int",
    "precision": "precision",  # fp32, bf16, or auto: bf16 where the device has native bf16 units
    "lr_steps": [["number"]],  # [[epochs, lr factor], ...] stages of a step schedule
    "validation": "number",  # held-out fraction for best-validation-loss selection
}
# as in SCHEDULE; precision defaults to the dense training's
FINETUNE = {"epochs": "int", "lr": "number", "lr_steps": [["number"]], "precision": "precision"}
GRID = {
    "datasets": ["dataset"],
    "models": ["model"],
    "strategies": ["strategy"],
    "ratios": ["number"],
    "bases": ["basis"],
    "seeds": "int",
    "control": "bool",  # one unpruned, fine-tuned t = 1 run per dense model
    "finetune": FINETUNE,  # this grid's fine-tuning, over the profile's and the dataset's
    "train": SCHEDULE,  # this grid's dense training, over the profile's and its datasets' (issue 21)
}
SCHEMA: dict[str, Schema] = {
    "name": "str",
    "description": "str",
    "plugins": ["str"],
    "seeds": "int",
    "train": SCHEDULE,
    "finetune": FINETUNE,
    "pruning": {"basis": "basis", "grad_batches": "int", "grad_batch_size": "int"},
    "datasets": ("map", {"model": "model", "train": SCHEDULE, "finetune": FINETUNE}, "dataset"),
    "grids": ("map", GRID),
}


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (``smoke``, ``quick``, ``paper``) or a YAML file by path, validated
    against :data:`SCHEMA` after importing its ``plugins`` (:mod:`.plugins`)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        check_choice("profile", str(name_or_path), shipped())
        source = f"profile {name_or_path!r}"
        text = (resources.files("pruneflow.experiment") / "profiles" / f"{name_or_path}.yaml").read_text()
    else:
        source = str(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise ProfileError(f"{source}: cannot read the profile ({error.strerror})") from None
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ProfileError(f"{source}: malformed YAML{where}: {problem}") from None
    if isinstance(spec, dict) and path.suffix in (".yaml", ".yml") and isinstance(spec.get("plugins"), list):
        spec["plugins"] = [_beside(p, path) for p in spec["plugins"]]
    return parse(spec, source)


def _beside(plugin: Any, profile: Path) -> Any:
    """A relative plugin file path as seen from the profile's folder (modules stay as named)."""
    if isinstance(plugin, str) and plugin.endswith(".py") and not Path(plugin).is_absolute():
        return str(profile.parent / plugin)
    return plugin


def parse(spec: Any, source: str = "profile") -> Profile:
    """Validate a spec against :data:`SCHEMA` (importing its plugins first) and expand its grids;
    raises :class:`ProfileError` naming ``source`` and the key path before any work is done."""
    if not isinstance(spec, dict):
        got = "an empty file" if spec is None else f"a {type(spec).__name__}"
        raise ProfileError(f"{source}: a profile is a mapping with keys {', '.join(SCHEMA)}; got {got}")
    _check(spec.get("plugins", []), ["str"], "plugins", source)
    try:
        import_plugins(spec.get("plugins", []))
    except ValueError as error:
        raise ProfileError(f"{source}: plugins: {error}") from None
    _check(spec, SCHEMA, "", source)
    seeds = spec.get("seeds", 1)
    if seeds < 1:
        raise ProfileError(f"{source}: seeds must be a positive number of models per cell, got {seeds!r}")
    datasets = spec.get("datasets") or {}
    grids = {}
    for grid_name, grid in (spec.get("grids") or {}).items():
        try:
            runs = tuple(_expand(spec, datasets, grid or {}, seeds))
        except (ValueError, TypeError) as error:
            raise ProfileError(f"{source}: grids.{grid_name}: {error}") from None
        if not runs:
            raise ProfileError(
                f"{source}: grids.{grid_name}: grid {grid_name!r} is empty; every list in it needs an entry"
            )
        grids[grid_name] = runs
    if not grids:
        raise ProfileError(f"{source}: grids: the profile has no grid; add at least one entry under 'grids'")
    return Profile(spec.get("name", "custom"), spec.get("description", ""), spec, grids)


def check_datasets(runs: list[PruneConfig], root: str | Path | None = None) -> None:
    """Raise :class:`ProfileError` listing every dataset of ``runs`` whose files are missing,
    where to put them and how to fetch them, before any run starts."""
    names = list(dict.fromkeys(r.dense.dataset for r in runs))
    missing = [n for n in names if not available(n, root)]
    if missing:
        folder = data_root(None if root is None else Path(root)).resolve()
        raise ProfileError(
            f"missing datasets {', '.join(map(repr, missing))}: none found under {folder} (set "
            f"${DATA_ENV}); put them there in torchvision's layout, or fetch them once with internet: "
            f"python -c \"from pruneflow import data; [data.load(n, root='{folder}', download=True) "
            f'for n in {missing!r}]"'
        )


def _choices(leaf: str) -> list[str] | None:
    return {
        "dataset": DATASETS.names(),
        "strategy": STRATEGIES.names(),
        "basis": list(BASES),
        "model": MODELS.names(),
        "precision": [*PRECISIONS, "auto"],
    }.get(leaf)


def _check(value: Any, schema: Schema, path: str, source: str) -> None:
    """Raise :class:`ProfileError` at the first place ``value`` does not fit ``schema``."""
    where = f"{source}: {path or 'top level'}"
    if isinstance(schema, dict):
        if value is None and path:
            return
        if not isinstance(value, dict):
            raise ProfileError(f"{where}: expected a mapping with keys {', '.join(schema)}; got {value!r}")
        for key, item in value.items():
            if key not in schema:
                valid = ", ".join(schema)
                raise ProfileError(f"{where}: unknown key {key!r}; valid keys: {valid}")
            _check(item, schema[key], f"{path}.{key}" if path else str(key), source)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise ProfileError(f"{where}: expected a list, e.g. [{value}]; got {value!r}")
        for i, item in enumerate(value):
            _check(item, schema[0], f"{path}[{i}]", source)
    elif isinstance(schema, tuple):
        if not isinstance(value, dict):
            raise ProfileError(f"{where}: expected a mapping of names to settings; got {value!r}")
        for key, item in value.items():
            if len(schema) > 2:
                _check(key, schema[2], path, source)
            _check(item, schema[1], f"{path}.{key}", source)
    elif schema == "model" and isinstance(value, dict):
        _check(value, {"name": "model", "width": "number"}, path, source)
        if "name" not in value:
            raise ProfileError(f"{where}: a model mapping needs a 'name' (and optionally a 'width')")
    elif not _fits(value, schema):
        raise ProfileError(f"{where}: expected {_EXPECTED.get(schema, 'a string')}; got {value!r}")
    elif schema == "strategy" and MATCH in value:  # a matched run, S@M
        try:
            parse_label(value)
        except ValueError as error:
            raise ProfileError(f"{where}: {error}") from None
    elif (choices := _choices(schema)) is not None and value not in choices:
        raise ProfileError(
            f"{where}: unknown {schema} {value!r}; valid choices: {', '.join(map(repr, choices))}"
        )


_EXPECTED = {"int": "an integer", "number": "a number", "bool": "true or false", "any": "anything"}


def _fits(value: Any, leaf: str) -> bool:
    if leaf == "any":
        return True
    if leaf == "bool":
        return isinstance(value, bool)
    if leaf == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if leaf == "number":
        if isinstance(value, str):  # YAML reads 5e-4 as a string
            try:
                float(value)
            except ValueError:
                return False
            return True
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _expand(spec: dict[str, Any], datasets: dict[str, Any], grid: dict[str, Any], seeds: int):
    pruning = {"basis": "prunable", "grad_batches": 1, "grad_batch_size": 128, **(spec.get("pruning") or {})}
    controlled: set[DenseConfig] = set()
    for dataset in grid.get("datasets", list(datasets)):
        check_choice("dataset", dataset, DATASETS.names())
        per_dataset = datasets.get(dataset) or {}
        finetune = {
            **(spec.get("finetune") or {}),
            **(per_dataset.get("finetune") or {}),
            **(grid.get("finetune") or {}),
        }
        train = {
            **(spec.get("train") or {}),
            **(per_dataset.get("train") or {}),
            **(grid.get("train") or {}),
        }
        if missing := [key for key in ("epochs", "lr") if key not in train]:
            raise ValueError(
                f"training of {dataset!r} has no {' or '.join(map(repr, missing))}: set them under "
                f"train: (or datasets.{dataset}.train:)"
            )
        train = Schedule(**{**train, "precision": resolve_precision(train.get("precision", "fp32"))})
        models = grid.get("models", [per_dataset.get("model")])
        tuning = {
            "finetune_epochs": finetune.get("epochs", 10),
            "finetune_lr": finetune.get("lr", 0.01),
            "finetune_lr_steps": finetune.get("lr_steps", ()),
            "finetune_precision": resolve_precision(finetune["precision"]) if "precision" in finetune else "",
        }
        for model, seed, label, ratio, basis in itertools.product(
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
                yield PruneConfig(dense, CONTROL, 1, basis, **tuning)
            strategy, match = parse_label(label)
            grad = (pruning["grad_batches"], pruning["grad_batch_size"])
            yield PruneConfig(dense, strategy, ratio, basis, *grad, **tuning, match=match)

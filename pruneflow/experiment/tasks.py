"""The work of one run, shared by both executors (the local grid and the Dask cluster): train a
dense model once (or read it back from the store), prune it, fine-tune, evaluate, and turn the
confusion matrices into tidy rows.

A run that diverges or raises is recorded with its reason: diverged runs and ratios a model
cannot reach are kept as results, runs that raised anything else are retried next time.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from .. import data, models
from ..batched import fit_many
from ..devices import derive_seed, place, seeded
from ..masks import Mask, parameter_counts
from ..metrics import accuracy_from_confusion, recall_from_confusion
from ..pruning import Unreachable, compute_mask, prune, score
from ..strategies import STRATEGIES, Batches
from ..train import Diverged, History, evaluate, fit, gradient_batches
from .config import CONTROL, DenseConfig, PruneConfig
from .provenance import code_version, device_name
from .results import SCHEMA, Store


class Stream(Enum):
    """Keys of a run's random streams; a stream's seed is ``derive_seed(key, owner)`` with the dense
    seed (init, order, gradient) or the run's :attr:`~.config.PruneConfig.streams` (prune, finetune)
    as owner, so every executor and the plain-loop benchmark draw the same numbers."""

    INIT = "init"  # the dense model's initial weights
    ORDER = "order"  # the dense training's batch order
    GRADIENT = "gradient"  # the batches GP and UP take their gradients from
    PRUNE = "prune"  # RP's draw
    FINETUNE = "finetune"  # the fine-tuning's batch order


def stream_seed(stream: Stream, owner: object) -> int:
    """The seed of ``stream`` for ``owner`` (a dense seed or a run's streams key)."""
    return derive_seed(stream.value, owner)


class Stopwatch:
    """Wall seconds spent per phase: ``dense``, ``prune``, ``finetune``, ``evaluate``."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start


Shared = dict[tuple[Any, ...], Any]  # of one dense model: ratio-free scores, matched runs' kept counts
Prepared = tuple[pa.Table, torch.nn.Module | None, data.Dataset | None]  # a dense model's rows, weights, data


def _never() -> bool:
    return False


@dataclass
class RunContext:
    """Where and how runs are carried out: the store they are read from and written to, the device,
    the phase clock, how many runs are fine-tuned at once (``together``) and how many dense models
    of one cell are trained at once (``dense_together``), the ratio-free scores of each dense model
    at hand (``shared``: dense model -> its scores by strategy and gradient batches;
    :func:`run_groups` starts it empty), and ``stopping``, asked before each run (or batch of runs
    fine-tuned together): True ends the group there (an interrupted grid lets a worker finish the
    run at hand, then stop)."""

    store: Store
    device: torch.device
    clock: Stopwatch = field(default_factory=Stopwatch)
    together: int = 1
    shared: dict[DenseConfig, Shared] = field(default_factory=dict)
    stopping: Callable[[], bool] = _never
    dense_together: int = 1


@dataclass(frozen=True)
class Outcome:
    """What became of one run: its rows and ``status``: ``computed`` or ``cached`` (every row ok),
    ``failed`` (stored with a non-ok status), or ``dense`` (the rows of a dense model)."""

    status: str
    table: pa.Table

    @property
    def errored(self) -> bool:
        """Whether the run raised (status ``error``: a defect, not a result; retried next time)."""
        return "error" in self.table.column("status").to_pylist()

    @property
    def reason(self) -> str:
        return f"{self.table.column('run_id')[0]}: {self.table.column('reason')[0]}"


def run_group(dense: DenseConfig, group: list[PruneConfig], ctx: RunContext) -> list[Outcome]:
    """The dense model of ``group`` and every run of ``group`` from it (:func:`run_groups`)."""
    return run_groups({dense: group}, ctx)


def run_groups(groups: dict[DenseConfig, list[PruneConfig]], ctx: RunContext) -> list[Outcome]:
    """The dense models of ``groups`` (trained, ``ctx.dense_together`` of a cell at once, or read
    back) and every run of each from its dense model, each read back if stored; ``ctx.together`` > 1
    fine-tunes that many runs at once (:func:`fit_many`), across dense models, where :func:`at_once`
    allows it. A ratio-free strategy scores each dense model once for all its ratios."""
    ctx = replace(ctx, shared={})
    tables = {r: ctx.store.read(r) for group in groups.values() for r in group}
    need = {d: any(tables[r] is None for r in group) for d, group in groups.items()}
    prepared = prepare_denses(list(groups), ctx, need)
    outcomes = [Outcome("dense", p[0]) for p in prepared.values()]
    outcomes += [cached(t) for t in tables.values() if t is not None]
    todo = [r for r in tables if tables[r] is None]
    size = {d: at_once(m, ctx.device, ctx.together) for d, (_, m, _) in prepared.items() if m is not None}
    batched = [r for r in todo if size.get(r.dense, 1) > 1]  # the others: one by one, or no dense model
    for chunk in _chunks(batched, ctx.together):
        if ctx.stopping():
            return outcomes
        rows = prune_runs_together(chunk, prepared, ctx)
        outcomes += [store_rows(r, rows[r], ctx.store) for r in chunk]
    todo = [r for r in todo if size.get(r.dense, 1) == 1]
    for run in todo:
        if ctx.stopping():
            break
        outcomes.append(run_cell(run, *prepared[run.dense][1:], prepared[run.dense][0], ctx))
    return outcomes


def at_once(model: torch.nn.Module, device: torch.device, size: int) -> int:
    """How many models of ``model``'s architecture to train at once on ``device`` (vmapped, the
    grid's ``size`` asked): ``size``, but 1 for a convolutional model on a CPU, where vmap turns N
    convolutions into one grouped convolution that runs slower than N separate ones (one core, 4 at
    once: LeNet-5 on mnist5k 0.57x the speed of one by one, ResNet-20 at half width on digits 0.68x;
    ``benchmarks/vmap_speed.py --model lenet5 --threads 1``)."""
    convolutions = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    convolutional = any(isinstance(m, convolutions) for m in model.modules())
    return 1 if device.type == "cpu" and convolutional else max(1, size)


def _chunks(runs: list[PruneConfig], size: int) -> Iterator[list[PruneConfig]]:
    """Runs in groups of at most ``size`` sharing one fine-tuning schedule and one architecture."""
    by_schedule: dict[Any, list[PruneConfig]] = {}
    for r in runs:
        by_schedule.setdefault((r.finetune, replace(r.dense, seed=0)), []).append(r)
    for same in by_schedule.values():
        for i in range(0, len(same), size):
            yield same[i : i + size]


def store_rows(run: PruneConfig, rows: list[dict[str, Any]], store: Store) -> Outcome:
    store.write(run, rows)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return Outcome("computed" if _ok(table) else "failed", table)


def cached(table: pa.Table) -> Outcome:
    return Outcome("cached" if _ok(table) else "failed", table)


def prepare_dense(dense: DenseConfig, ctx: RunContext, need_model: bool) -> Prepared:
    """The dense model's rows and, if ``need_model``, its trained weights and dataset on ``ctx.device``:
    read back from the store, or trained (and stored) when missing or unreadable."""
    return prepare_denses([dense], ctx, {dense: need_model})[dense]


def prepare_denses(
    denses: list[DenseConfig], ctx: RunContext, need: dict[DenseConfig, bool]
) -> dict[DenseConfig, Prepared]:
    """:func:`prepare_dense` of each of ``denses`` (``need``: whether its model is needed); those to
    train are trained ``ctx.dense_together`` at once where they share dataset, model and schedule."""
    store, loaded, prepared = ctx.store, {}, {}
    missing: dict[DenseConfig, list[DenseConfig]] = {}  # cell (seed 0) -> its dense models to train
    for dense in denses:
        table = store.read(dense)
        if table is not None and not need[dense]:
            prepared[dense] = (table, None, None)
            continue
        if dense.dataset not in loaded:
            loaded[dense.dataset] = data.load(dense.dataset).to(ctx.device)
        dataset = loaded[dense.dataset]
        if table is not None and not _ok(table):  # a failed dense model stays failed
            prepared[dense] = (table, None, dataset)
        elif table is not None and (model := _restore(dense, dataset, ctx)) is not None:
            prepared[dense] = (table, model, dataset)
        else:
            missing.setdefault(replace(dense, seed=0), []).append(dense)
    for cell in missing.values():
        dataset = loaded[cell[0].dataset]
        size = at_once(build_model(cell[0], dataset, ctx.device), ctx.device, ctx.dense_together)
        for start in range(0, len(cell), size):
            chunk = cell[start : start + size]
            for dense, (model, rows, history) in zip(chunk, train_denses(chunk, dataset, ctx), strict=True):
                if model is not None:
                    store.save_weights(dense, model.state_dict())
                store.write(dense, rows, history)
                prepared[dense] = (pa.Table.from_pylist(rows, schema=SCHEMA), model, dataset)
    return {dense: prepared[dense] for dense in denses}


def _restore(dense: DenseConfig, dataset: data.Dataset, ctx: RunContext) -> torch.nn.Module | None:
    """The stored trained model of ``dense``, or None if its checkpoint is missing or cannot be
    loaded into the architecture (any error: truncated, garbage, other shapes): then it is retrained."""
    weights = ctx.store.load_weights(dense)
    if weights is None:
        return None
    model = build_model(dense, dataset, ctx.device)
    try:
        model.load_state_dict(weights)
    except Exception:  # a checkpoint that does not fit is as good as missing
        return None
    return model


def run_cell(
    run: PruneConfig,
    model: torch.nn.Module | None,
    dataset: data.Dataset | None,
    dense_table: pa.Table,
    ctx: RunContext,
) -> Outcome:
    """Prune, evaluate, fine-tune and evaluate one run from its dense model; store its rows."""
    return store_rows(run, prune_run(run, model, dataset, dense_table, ctx), ctx.store)


def _ok(table: pa.Table) -> bool:
    return set(table.column("status").to_pylist()) == {"ok"}


def build_model(dense: DenseConfig, dataset: data.Dataset, device: torch.device) -> torch.nn.Module:
    """The untrained model of ``dense``, initialised under its seed, on ``device`` (:func:`place`)."""
    with seeded(stream_seed(Stream.INIT, dense.seed)):
        model = models.build(dense.model, dataset.input_shape, dataset.num_classes, dense.width)
    return place(model, device)


def _common(dense: DenseConfig, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
    n_prunable, n_params = parameter_counts(model)
    return {
        "dense_id": dense.id,
        "dataset": dense.dataset,
        "model": dense.model,
        "width": dense.width,
        "n_params": n_params,
        "n_prunable": n_prunable,
        "seed": dense.seed,
        "weight_decay": dense.train.weight_decay,
        "code_version": code_version(),
        "device": device_name(device),
    }


def _class_rows(common: dict[str, Any], stage: str, confusion: np.ndarray) -> list[dict[str, Any]]:
    """One row per class: support, recall R^c and accuracy A from a confusion matrix."""
    recall, accuracy = recall_from_confusion(confusion), float(accuracy_from_confusion(confusion))
    return [
        {
            **common,
            "stage": stage,
            "class": c,
            "support": int(s),
            "recall": float(r),
            "accuracy": accuracy,
            "status": "ok",
        }
        for c, (s, r) in enumerate(zip(confusion.sum(axis=1), recall, strict=True))
    ]


def _failure(common: dict[str, Any], error: BaseException) -> list[dict[str, Any]]:
    """A failed run's single row: 'diverged' and 'unreachable' are results, 'error' is retried."""
    status = {Diverged: "diverged", Unreachable: "unreachable"}.get(type(error), "error")
    reason = traceback.format_exception_only(error)[-1].strip()
    return [{**common, "stage": "failed", "status": status, "reason": reason}]


def _dense_common(dense: DenseConfig, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
    return {
        **_common(dense, model, device),
        "run_id": dense.id,
        "compression": 1.0,
        "compression_prunable": 1.0,
        "compression_all": 1.0,
    }


def train_dense(
    dense: DenseConfig, dataset: data.Dataset, ctx: RunContext
) -> tuple[torch.nn.Module | None, list[dict[str, Any]], History | None]:
    """The trained dense model (None if it failed), its rows and its training history (None if it
    failed); nothing is stored."""
    start, clock = time.perf_counter(), ctx.clock
    model = build_model(dense, dataset, ctx.device)
    common = _dense_common(dense, model, ctx.device)
    try:
        with clock("dense"):
            history = fit(model, dataset, dense.train, seed=stream_seed(Stream.ORDER, dense.seed))
        with clock("evaluate"):
            confusion = evaluate(model, dataset.x_test, dataset.y_test, dataset.num_classes)
    except Exception as error:  # a failure is data: recorded, and the grid goes on
        return None, _with_time(_failure(common, error), start), None
    return model, _with_time(_class_rows(common, "dense", confusion), start), history


def train_denses(
    denses: list[DenseConfig], dataset: data.Dataset, ctx: RunContext
) -> list[tuple[torch.nn.Module | None, list[dict[str, Any]], History | None]]:
    """:func:`train_dense` of each of ``denses`` (one dataset, model and schedule), trained together
    (:func:`fit_many`, equal to one by one up to float rounding); if that fails (e.g. one diverges)
    they are trained again one by one, each with its own status."""
    if len(denses) == 1:
        return [train_dense(denses[0], dataset, ctx)]
    start, clock = time.perf_counter(), ctx.clock
    built = [build_model(dense, dataset, ctx.device) for dense in denses]
    try:
        with clock("dense"):
            seeds = [stream_seed(Stream.ORDER, dense.seed) for dense in denses]
            histories = fit_many(built, dataset, denses[0].train, seeds=seeds)
        with clock("evaluate"):
            confusions = [evaluate(m, dataset.x_test, dataset.y_test, dataset.num_classes) for m in built]
    except Exception:
        return [train_dense(dense, dataset, ctx) for dense in denses]
    return [
        (
            model,
            _with_time(_class_rows(_dense_common(dense, model, ctx.device), "dense", confusion), start),
            history,
        )
        for dense, model, confusion, history in zip(denses, built, confusions, histories, strict=True)
    ]


def _dense_failed(run: PruneConfig, dense_table: pa.Table) -> list[dict[str, Any]]:
    """The single row of a run whose dense model failed."""
    keys = ("dense_id", "dataset", "model", "width", "seed", "weight_decay", "device")
    first = {k: dense_table.column(k)[0].as_py() for k in keys}
    reason = dense_table.column("reason")[0].as_py()
    return [
        {
            **first,
            **_run_fields(run),
            "stage": "failed",
            "status": "diverged",
            "reason": f"dense model failed: {reason}",
            "code_version": code_version(),
        }
    ]


def _run_fields(run: PruneConfig) -> dict[str, Any]:
    return {"run_id": run.id, "strategy": run.label, "compression": run.compression, "basis": run.basis}


def _run_common(run: PruneConfig, dense_model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
    """The fields every row of ``run`` shares."""
    return {**_run_fields(run), **_common(run.dense, dense_model, device)}


@dataclass
class _Pruned:
    """A run pruned and evaluated, waiting for its fine-tuning."""

    run: PruneConfig
    model: torch.nn.Module
    masks: Mask
    common: dict[str, Any]
    confusion: np.ndarray
    start: float


def _prune_step(
    run: PruneConfig,
    common: dict[str, Any],
    dense_model: torch.nn.Module,
    dataset: data.Dataset,
    ctx: RunContext,
    start: float,
) -> _Pruned:
    clock, shared = ctx.clock, ctx.shared.setdefault(run.dense, {})
    if run.strategy == CONTROL:  # t = 1: every weight kept, fine-tuned with the same schedule
        model = copy.deepcopy(dense_model)
        common = {**common, "compression_prunable": 1.0, "compression_all": 1.0}
        with clock("evaluate"):
            confusion = evaluate(model, dataset.x_test, dataset.y_test, dataset.num_classes)
        return _Pruned(run, model, Mask.ones_like(model), common, confusion, start)
    with clock("prune"):
        model = copy.deepcopy(dense_model)
        batches = gradient_batches(
            dataset, run.grad_batches, run.grad_batch_size, seed=stream_seed(Stream.GRADIENT, run.dense.seed)
        )
        eps, seed = run.dense.train.weight_decay, stream_seed(Stream.PRUNE, run.streams)
        scores = None
        if getattr(STRATEGIES[run.strategy], "ratio_free", False):
            key = (run.strategy, run.grad_batches, run.grad_batch_size)
            if key not in shared:
                shared[key] = score(dense_model, run.strategy, batches=batches, weight_decay=eps, seed=seed)
            scores = shared[key]
        keep = matched_keep(run, dense_model, batches, shared) if run.match else None
        result = prune(
            model,
            run.strategy,
            run.compression,
            basis=run.basis,
            batches=batches,
            weight_decay=eps,
            seed=seed,
            scores=scores,
            keep=keep,
        )
    common = {
        **common,
        "compression_prunable": result.compression_prunable,
        "compression_all": result.compression_all,
    }
    with clock("evaluate"):
        confusion = evaluate(model, dataset.x_test, dataset.y_test, dataset.num_classes)
    return _Pruned(run, model, result.masks, common, confusion, start)


def matched_keep(
    run: PruneConfig, dense_model: torch.nn.Module, batches: Batches, shared: Shared | None
) -> int:
    """The number of weights ``run.match`` keeps on the dense model at the run's asked t and basis: the
    mask of that strategy's own run (its seed, the same gradient batches), computed once per dense
    model and match run (``shared``)."""
    own = dataclasses.replace(run, strategy=run.match, match="")
    cache, key = ({} if shared is None else shared), ("kept", own.streams)
    if key not in cache:
        eps, seed = run.dense.train.weight_decay, stream_seed(Stream.PRUNE, own.streams)
        kwargs = dict(basis=own.basis, batches=batches, weight_decay=eps, seed=seed)
        cache[key] = compute_mask(dense_model, own.strategy, own.compression, **kwargs).kept
    return cache[key]


def _finish(pruned: _Pruned, dataset: data.Dataset, clock: Stopwatch) -> list[dict[str, Any]]:
    """Rows of a fine-tuned run: both stages, per class."""
    with clock("evaluate"):
        confusion = evaluate(pruned.model, dataset.x_test, dataset.y_test, dataset.num_classes)
    rows = _class_rows(pruned.common, "pruned", pruned.confusion) + _class_rows(
        pruned.common, "finetuned", confusion
    )
    return _with_time(rows, pruned.start)


def prune_run(
    run: PruneConfig,
    dense_model: torch.nn.Module | None,
    dataset: data.Dataset,
    dense_table: pa.Table,
    ctx: RunContext,
) -> list[dict[str, Any]]:
    """Rows of one run: pruned, evaluated, fine-tuned, evaluated (or its failure)."""
    if dense_model is None:
        return _dense_failed(run, dense_table)
    start, common = time.perf_counter(), _run_common(run, dense_model, ctx.device)
    try:
        pruned = _prune_step(run, common, dense_model, dataset, ctx, start)
        with ctx.clock("finetune"):
            seed = stream_seed(Stream.FINETUNE, run.streams)
            fit(pruned.model, dataset, run.finetune, seed=seed, mask=pruned.masks)
        return _finish(pruned, dataset, ctx.clock)
    except Exception as error:  # a failure is data: recorded, and the grid goes on
        return _with_time(_failure(common, error), start)


def prune_runs_together(
    runs: list[PruneConfig], prepared: dict[DenseConfig, Prepared], ctx: RunContext
) -> dict[PruneConfig, list[dict[str, Any]]]:
    """Rows of runs with one fine-tuning schedule and dataset, each from its trained dense model in
    ``prepared`` (:func:`prepare_denses`), fine-tuned together (:func:`batched.fit_many`); if that
    fails (e.g. one diverges) they are redone one by one, each with its own status."""
    rows, ready = {}, []
    for run in runs:
        _, dense_model, dataset = prepared[run.dense]
        start, common = time.perf_counter(), _run_common(run, dense_model, ctx.device)
        try:
            ready.append(_prune_step(run, common, dense_model, dataset, ctx, start))
        except Exception as error:
            rows[run] = _with_time(_failure(common, error), start)
    if not ready:
        return rows
    try:
        with ctx.clock("finetune"):
            fit_many(
                [p.model for p in ready],
                dataset,
                ready[0].run.finetune,
                seeds=[stream_seed(Stream.FINETUNE, p.run.streams) for p in ready],
                masks=[p.masks for p in ready],
            )
    except Exception:
        redo = {
            p.run: prune_run(p.run, *prepared[p.run.dense][1:], prepared[p.run.dense][0], ctx) for p in ready
        }
        return rows | redo
    return rows | {p.run: _finish(p, dataset, ctx.clock) for p in ready}


def _with_time(rows: list[dict[str, Any]], start: float) -> list[dict[str, Any]]:
    seconds = time.perf_counter() - start
    return [{**row, "seconds": seconds} for row in rows]

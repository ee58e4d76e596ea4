"""Run a profile's grid: train each dense model once, prune it with every strategy and ratio,
fine-tune, and store tidy rows; finished runs are read back, not recomputed.

A run is the unit of work (and of the progress bar). Runs that share a dense model are done
together so the dense weights are trained, or loaded, once; the work of one run is in
:mod:`pruneflow.experiment.tasks`, which the Dask executor (:mod:`.cluster`) shares.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import torch
from tqdm import tqdm

from ..batched import supports
from ..devices import default_device
from ..registry import check_choice
from .config import DenseConfig, PruneConfig
from .profiles import Profile, check_datasets, load_profile
from .results import DEFAULT_ROOT, Store
from .tasks import Outcome, Stopwatch, cached, prepare_dense, prune_runs_together, run_cell, store_rows

DENSE_KEYS = ("dataset", "model", "width", "seed")
FILTER_KEYS = (*DENSE_KEYS, "strategy", "compression", "basis")
EXECUTORS = ("local", "dask")
FINETUNE_TOGETHER_CUDA = 8


@dataclass(frozen=True)
class Summary:
    """Counts of one grid execution."""

    profile: str
    computed: int
    cached: int
    failed: int
    seconds: float
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        total = self.computed + self.cached + self.failed
        line = (
            f"{self.profile}: {total} runs - {self.computed} computed, {self.cached} cached, "
            f"{self.failed} failed - {self.seconds:.1f} s"
        )
        return "\n".join([line, *(f"  failed: {r}" for r in self.reasons[:5])])


def select(runs: Iterable[PruneConfig], only: Mapping[str, str | Sequence[str]] | None) -> list[PruneConfig]:
    """The runs whose fields equal, for every key of ``only``, its value or one of its values
    (numbers compared as numbers)."""
    only = dict(only or {})
    for key in only:
        check_choice("filter key", key, FILTER_KEYS)

    def matches(run: PruneConfig, key: str, wanted: str) -> bool:
        raw = getattr(run.dense, key) if key in DENSE_KEYS else getattr(run, key)
        try:
            return float(raw) == float(wanted)
        except (TypeError, ValueError):
            return str(raw) == str(wanted)

    wanted = {k: [v] if isinstance(v, str | int | float) else list(v) for k, v in only.items()}
    return [r for r in runs if all(any(matches(r, k, v) for v in vs) for k, vs in wanted.items())]


def _values(profile: Profile) -> str:
    """The values each filter key takes in ``profile``, e.g. ``seed: 0, 1, 2``."""
    runs = profile.runs
    fields = {
        k: [getattr(r.dense, k) if k in DENSE_KEYS else getattr(r, k) for r in runs] for k in FILTER_KEYS
    }
    return "existing values: " + "; ".join(
        f"{k}: {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in dict.fromkeys(vs))}"
        for k, vs in fields.items()
    )


def run(
    spec: Profile | str | Path,
    results: str | Path = DEFAULT_ROOT,
    *,
    only: Mapping[str, str] | None = None,
    progress: bool = True,
    device: torch.device | None = None,
    stopwatch: Stopwatch | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    finetune_together: int | None = None,
) -> pd.DataFrame:
    """Run (or read back) every run of ``spec`` into ``results``; returns their rows and those of
    their dense models as one tidy DataFrame, and prints a one-line summary.

    ``executor="local"`` runs in this process (``stopwatch`` collects the time per phase) and
    fine-tunes ``finetune_together`` runs of one dense model at once (default: 8 on CUDA, 1 on a
    CPU, where it buys little; equal to one by one up to float rounding);
    ``"dask"`` sends the runs to the Dask cluster at ``scheduler``, or to a new local one
    (:mod:`pruneflow.experiment.cluster`)."""
    check_choice("executor", executor, EXECUTORS)
    profile = spec if isinstance(spec, Profile) else load_profile(spec)
    runs = select(profile.runs, only)
    if not runs:
        raise ValueError(f"no run of profile {profile.name!r} matches {dict(only or {})}; {_values(profile)}")
    check_datasets(runs)
    store = Store(results)
    store.check_writable()
    start = time.perf_counter()
    if executor == "dask":
        from .cluster import run_on_dask

        outcomes = run_on_dask(runs, store, scheduler, progress)
    else:
        device = device or default_device()
        together = finetune_together or (FINETUNE_TOGETHER_CUDA if device.type == "cuda" else 1)
        outcomes = _run_here(runs, store, device, stopwatch or Stopwatch(), progress, together)
    counts, reasons, tables = Counter(), [], []
    for status, table in outcomes:
        tables.append(table)
        if status is None:  # a dense model's rows
            continue
        counts[status] += 1
        if status == "failed":
            reasons.append(f"{table.column('run_id')[0]}: {table.column('reason')[0]}")
    store.remove_temporary()
    elapsed = time.perf_counter() - start
    print(
        Summary(profile.name, counts["computed"], counts["cached"], counts["failed"], elapsed, tuple(reasons))
    )
    return pa.concat_tables(tables).to_pandas()


def _run_here(
    runs: list[PruneConfig],
    store: Store,
    device: torch.device,
    clock: Stopwatch,
    progress: bool,
    together: int,
) -> list[Outcome]:
    """Every run in this process, grouped by dense model so that each is trained or loaded once;
    ``together`` > 1 fine-tunes that many runs of a dense model at once (vmapped)."""
    groups: dict[DenseConfig, list[PruneConfig]] = {}
    for r in runs:
        groups.setdefault(r.dense, []).append(r)
    outcomes = []
    with tqdm(total=len(runs), unit="run", disable=not progress) as bar:
        for dense, group in groups.items():
            tables = {r: store.read(r) for r in group}
            todo = [r for r in group if tables[r] is None]
            dense_table, model, dataset = prepare_dense(dense, store, device, clock, need_model=bool(todo))
            outcomes.append((None, dense_table))
            for r in group:
                if tables[r] is not None:
                    outcomes.append(cached(tables[r]))
                    bar.update()
            if together > 1 and todo and model is not None and supports(model, dataset, todo[0].finetune):
                for chunk in _chunks(todo, together):
                    for r, rows in prune_runs_together(
                        chunk, model, dataset, device, dense_table, clock
                    ).items():
                        outcomes.append(store_rows(r, rows, store))
                        bar.update()
            else:
                for r in todo:
                    outcomes.append(run_cell(r, model, dataset, dense_table, store, device, clock))
                    bar.update()
    return outcomes


def _chunks(runs: list[PruneConfig], size: int) -> Iterator[list[PruneConfig]]:
    """Runs in groups of at most ``size`` sharing one fine-tuning schedule."""
    by_schedule: dict[Any, list[PruneConfig]] = {}
    for r in runs:
        by_schedule.setdefault(r.finetune, []).append(r)
    for same in by_schedule.values():
        for i in range(0, len(same), size):
            yield same[i : i + size]

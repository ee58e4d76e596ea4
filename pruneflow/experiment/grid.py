"""Run a profile's grid: train each dense model once, prune it with every strategy and ratio,
fine-tune, and store tidy rows; finished runs are read back, not recomputed.

A run is the unit of work (and of the progress bar). Runs that share a dense model are done
together so the dense weights are trained, or loaded, once; the work of one run is in
:mod:`pruneflow.experiment.tasks`, which the Dask executor (:mod:`.cluster`) shares.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import torch
from tqdm import tqdm

from ..devices import default_device
from ..registry import check_choice
from .config import DenseConfig, PruneConfig
from .plugins import import_plugins, imported
from .profiles import Profile, check_datasets, load_profile
from .results import DEFAULT_ROOT, Store
from .tasks import Outcome, Stopwatch, cached, prepare_dense, run_group

DENSE_KEYS = ("dataset", "model", "width", "seed")
FILTER_KEYS = (*DENSE_KEYS, "strategy", "compression", "basis")
EXECUTORS = ("local", "dask")
FINETUNE_TOGETHER = {"cuda": 8, "cpu": 10}  # runs of a dense model fine-tuned at once (vmapped)


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
        raw = _field(run, key)
        try:
            return float(raw) == float(wanted)
        except (TypeError, ValueError):
            return str(raw) == str(wanted)

    wanted = {k: [v] if isinstance(v, str | int | float) else list(v) for k, v in only.items()}
    return [r for r in runs if all(any(matches(r, k, v) for v in vs) for k, vs in wanted.items())]


def _field(run: PruneConfig, key: str) -> object:
    """The value of filter key ``key`` for ``run``; ``strategy`` is its label, as in the rows."""
    if key == "strategy":
        return run.label
    return getattr(run.dense, key) if key in DENSE_KEYS else getattr(run, key)


def _values(profile: Profile) -> str:
    """The values each filter key takes in ``profile``, e.g. ``seed: 0, 1, 2``."""
    runs = profile.runs
    fields = {k: [_field(r, k) for r in runs] for k in FILTER_KEYS}
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
    workers: int | None = None,
) -> pd.DataFrame:
    """Run (or read back) every run of ``spec`` into ``results``; returns their rows and those of
    their dense models as one tidy DataFrame, and prints a one-line summary.

    ``executor="local"`` runs on this machine: dense models (each with its runs) are spread over
    ``workers`` single-threaded processes (default: one per core on a CPU, see
    :func:`default_workers`; 1 runs in this process), ``stopwatch`` collects the seconds per phase
    (summed over workers), and ``finetune_together`` runs of one dense model are fine-tuned at once
    (default :data:`FINETUNE_TOGETHER`: 8 on CUDA, 10 on a CPU, where it saves a sixth of the
    per-step overhead; equal to one by one up to float rounding).
    Same seeds give identical rows in the same mode; another thread count may change float
    reductions, so rows agree only up to a few test samples (tests/test_grid.py states by how much);
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
        together = finetune_together or FINETUNE_TOGETHER.get(device.type, 1)
        workers = workers or default_workers(device)
        outcomes = _run_here(runs, store, device, stopwatch or Stopwatch(), progress, together, workers)
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
    workers: int,
) -> list[Outcome]:
    """Every run, grouped by dense model so that each is trained or loaded once. Finished groups are
    read back here; the others run here (``workers`` = 1) or in a pool of ``workers`` processes,
    one dense model at a time each (:func:`_work_group`)."""
    groups: dict[DenseConfig, list[PruneConfig]] = {}
    for r in runs:
        groups.setdefault(r.dense, []).append(r)
    outcomes: list[Outcome] = []
    pending: dict[DenseConfig, list[PruneConfig]] = {}
    for dense, group in groups.items():
        tables = [store.read(r) for r in group]
        if any(t is None for t in tables):
            pending[dense] = group
            continue
        dense_table, _, _ = prepare_dense(dense, store, device, clock, need_model=False)
        outcomes += [(None, dense_table), *map(cached, tables)]
    with tqdm(
        total=len(runs), initial=len(runs) - sum(map(len, pending.values())), unit="run", disable=not progress
    ) as bar:
        if workers > 1 and len(pending) > 1:
            # fork: workers inherit the loaded code and data, and scripts need no __main__ guard
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            threads = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(
                min(workers, len(pending)),
                mp_context=context,
                initializer=_init_worker,
                initargs=(threads, imported()),
            ) as pool:
                futures = {
                    pool.submit(_work_group, dense, group, str(store.root), together): len(group)
                    for dense, group in pending.items()
                }
                for future in as_completed(futures):
                    done, seconds = future.result()
                    outcomes += done
                    clock.seconds.update(seconds)
                    bar.update(futures[future])
        else:
            for dense, group in pending.items():
                outcomes += run_group(dense, group, store, device, clock, together)
                bar.update(len(group))
    return outcomes


def _init_worker(threads: int, plugins: list[str]) -> None:
    """A pool worker: ``threads`` intra-op threads, the parent's plugins (:mod:`.plugins`; already
    there when forked), and killed with its parent (Linux), so a killed grid leaves no orphan."""
    torch.set_num_threads(threads)
    import_plugins(plugins)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _work_group(
    dense: DenseConfig, group: list[PruneConfig], root: str, together: int
) -> tuple[list[Outcome], Counter[str]]:
    """One dense model and its runs in a pool worker (CPU); returns outcomes and seconds per phase."""
    clock = Stopwatch()
    return run_group(dense, group, Store(root), torch.device("cpu"), clock, together), clock.seconds


def default_workers(device: torch.device) -> int:
    """Processes the local executor uses: one per CPU core on a CPU (each single-threaded: small
    models scale better over processes than over threads), one on a GPU."""
    return 1 if device.type == "cuda" else max(1, os.cpu_count() or 1)

"""Run a profile's grid: train each dense model once, prune it with every strategy and ratio,
fine-tune, and store tidy rows; finished runs are read back, not recomputed.

A run is the unit of work (and of the progress bar). Runs that share a dense model are done
together so the dense weights are trained, or loaded, once; the work of one run is in
:mod:`pruneflow.experiment.tasks`, which the Dask executor (:mod:`.cluster`) shares.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed, wait
from dataclasses import dataclass, replace
from multiprocessing.synchronize import Event
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
from .results import DEFAULT_ROOT, Collected, Store, collect
from .tasks import Outcome, RunContext, Stopwatch, cached, run_groups

DENSE_KEYS = ("dataset", "model", "width", "seed")
FILTER_KEYS = (*DENSE_KEYS, "strategy", "compression", "basis")
EXECUTORS = ("local", "dask")
# Runs of a cell's dense models fine-tuned at once, and dense models of a cell (its seeds) trained at
# once, both vmapped; on a CPU convolutional models go one by one (:func:`.tasks.at_once`). One core
# of a 2-core EPYC, fp32: 10 LeNet-300-100 at once train 1.27x as fast as one by one on digits, 1.57x
# on MNIST-1D, 0.91x on mnist5k (benchmarks/vmap_speed.py --threads 1).
FINETUNE_TOGETHER = {"cuda": 8, "cpu": 10}
DENSE_TOGETHER = {"cuda": 8, "cpu": 10}
GRACE_SECONDS = 3.0  # after Ctrl-C, how long running workers may take to finish the run at hand


class Stopped(KeyboardInterrupt):
    """The grid was interrupted (Ctrl-C): the finished runs are stored, a rerun does the rest."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"stopped: {done} of {total} runs done; rerun to resume")
        self.done, self.total = done, total


@dataclass(frozen=True)
class Summary:
    """What one grid execution did: runs computed now, read back (``cached``) and ``failed``
    (diverged, unreachable or ``errored``: raised, a defect retried next time), with the first
    reasons and the wall seconds."""

    profile: str
    computed: int
    cached: int
    failed: int
    errored: int
    seconds: float
    reasons: tuple[str, ...]

    @property
    def total(self) -> int:
        return self.computed + self.cached + self.failed

    def __str__(self) -> str:
        errored = f" ({self.errored} errored)" if self.errored else ""
        line = (
            f"{self.profile}: {self.total} runs - {self.computed} computed, {self.cached} cached, "
            f"{self.failed} failed{errored} - {self.seconds:.1f} s"
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
    only: Mapping[str, str | Sequence[str]] | None = None,
    progress: bool = True,
    device: torch.device | None = None,
    stopwatch: Stopwatch | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    finetune_together: int | None = None,
    workers: int | None = None,
    dense_together: int | None = None,
) -> Summary:
    """Run every run of ``spec`` into ``results`` that is not stored there yet, and return what was
    done; the rows are read with :func:`.results.collect` or :func:`.results.load`. When nothing is
    missing the folder is only read (it may be read-only); else the grid holds the folder's lock
    (:meth:`.results.Store.lock`: a second grid into it waits, then computes only what is still
    missing). Ctrl-C cancels the queued work, lets running workers finish the run at hand for up to
    :data:`GRACE_SECONDS` (a second Ctrl-C: at once) and raises :class:`Stopped`; what finished is
    stored, so a rerun resumes.

    ``executor="local"`` runs on this machine: batches of up to ``dense_together`` dense models of a
    cell (default :data:`DENSE_TOGETHER`), each batch with all their runs, are spread over
    ``workers`` single-threaded processes (default: one per core on a CPU, see
    :func:`default_workers`; 1 runs in this process); a batch's dense models are trained at once,
    and ``finetune_together`` of its runs (default :data:`FINETUNE_TOGETHER`) are fine-tuned at once,
    across its dense models (both vmapped, :func:`pruneflow.batched.fit_many`: equal to one by one
    up to float rounding). ``stopwatch`` collects the seconds per phase (summed over workers).
    Same seeds give identical rows in the same mode; another thread count may change float
    reductions, so rows agree only up to a few test samples (tests/test_grid.py states by how much);
    ``"dask"`` sends the runs to the Dask cluster at ``scheduler``, or to a new local one
    (:mod:`pruneflow.experiment.cluster`)."""
    check_choice("executor", executor, EXECUTORS)
    profile = spec if isinstance(spec, Profile) else load_profile(spec)
    runs = select(profile.runs, only)
    if not runs:
        raise ValueError(f"no run of profile {profile.name!r} matches {dict(only or {})}; {_values(profile)}")
    start = time.perf_counter()
    done = collect(results, runs)
    outcomes = _cached(done, runs)
    if done.missing:
        _check_computable(done.missing, results)
        options = (device, stopwatch, executor, scheduler, finetune_together, workers, dense_together)
        store = Store(results)
        with _sigint_restored():
            try:
                with store.lock():
                    outcomes += _compute(done.missing, store, progress, len(runs), *options)
            except KeyboardInterrupt:
                _ignore_sigint()  # counting takes a moment: another Ctrl-C would lose the count
                left = len(collect(results, runs).missing)
                raise Stopped(len(runs) - left, len(runs)) from None
    runs_done = [o for o in outcomes if o.status != "dense"]
    counts = Counter(o.status for o in runs_done)
    return Summary(
        profile.name,
        counts["computed"],
        counts["cached"],
        counts["failed"],
        sum(o.errored for o in runs_done),
        time.perf_counter() - start,
        tuple(o.reason for o in runs_done if o.status == "failed"),
    )


def preflight(spec: Profile | str | Path, results: str | Path = DEFAULT_ROOT) -> list[PruneConfig]:
    """The runs of ``spec`` missing in ``results``; raises a one-line ``ValueError`` if they cannot
    be computed here (a dataset's files are absent, or the folder is not writable). Only reads."""
    profile = spec if isinstance(spec, Profile) else load_profile(spec)
    missing = collect(results, profile.runs).missing
    if missing:
        _check_computable(missing, results)
    return missing


def _check_computable(missing: list[PruneConfig], results: str | Path) -> None:
    check_datasets(missing)
    Store(results).check_writable(missing)


def _compute(
    runs: list[PruneConfig],
    store: Store,
    progress: bool,
    total: int,
    device: torch.device | None,
    stopwatch: Stopwatch | None,
    executor: str,
    scheduler: str | None,
    finetune_together: int | None,
    workers: int | None,
    dense_together: int | None,
) -> list[Outcome]:
    """Outcomes of the missing ``runs``: read back if stored by now (another grid may have held the
    lock), else computed with the options of :func:`run`; the caller holds the folder's lock.
    The bar (if ``progress``) counts ``total`` runs, those finished before included."""
    try:
        done = collect(store.root, runs)
        outcomes = _cached(done, runs)
        if executor == "dask":
            from .cluster import run_on_dask

            return outcomes + run_on_dask(done.missing, store, scheduler, progress)
        device = device or default_device()
        together = finetune_together or FINETUNE_TOGETHER.get(device.type, 1)
        dense = dense_together or DENSE_TOGETHER.get(device.type, 1)
        ctx = RunContext(store, device, stopwatch or Stopwatch(), together, dense_together=dense)
        bar = tqdm(total=total, initial=total - len(done.missing), unit="run", disable=not progress)
        with bar:
            return outcomes + _run_here(done.missing, ctx, bar, workers or default_workers(device))
    finally:
        store.remove_temporary()  # no writer of this grid is left


@contextlib.contextmanager
def _sigint_restored() -> Iterator[None]:
    """Put back the Ctrl-C handler of the main thread on exit (:func:`_ignore_sigint` changes it)."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, handler)


def _ignore_sigint() -> None:
    """Ignore further Ctrl-C (main thread only) while an interrupted grid cleans up and counts."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _cached(done: Collected, runs: list[PruneConfig]) -> list[Outcome]:
    """Outcomes of the runs of ``runs`` whose rows ``done`` holds."""
    return [cached(pa.Table.from_pandas(rows, preserve_index=False)) for rows in _by_run(done, runs)]


def _by_run(done: Collected, runs: list[PruneConfig]) -> list[pd.DataFrame]:
    """The stored rows of each run of ``runs`` that ``done`` holds."""
    ids = {r.id for r in runs}
    frame = done.frame.drop(columns="code_fingerprint")
    return [rows for run_id, rows in frame.groupby("run_id", sort=False) if run_id in ids]


def _run_here(runs: list[PruneConfig], ctx: RunContext, bar: tqdm, workers: int) -> list[Outcome]:
    """Every run, grouped by dense model so that each is trained or loaded once, and the dense
    models in batches (:func:`batches`): here (``workers`` = 1) or in a pool of ``workers``
    processes, one batch at a time each (:func:`_work_batch`); ``bar`` counts the runs done."""
    groups: dict[DenseConfig, list[PruneConfig]] = {}
    for r in runs:
        groups.setdefault(r.dense, []).append(r)
    work = batches(groups, ctx.dense_together, workers)
    outcomes: list[Outcome] = []
    if workers > 1 and len(work) > 1:
        # fork: workers inherit the loaded code and data, and scripts need no __main__ guard
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        threads = max(1, (os.cpu_count() or 1) // workers)
        stop = context.Event()
        pool = ProcessPoolExecutor(
            min(workers, len(work)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(threads, imported(), stop),
        )
        root, options = str(ctx.store.root), (ctx.together, ctx.dense_together)
        futures = {
            pool.submit(_work_batch, batch, root, *options): sum(map(len, batch.values())) for batch in work
        }
        try:
            for future in as_completed(futures):
                done, seconds = future.result()
                outcomes += done
                ctx.clock.seconds.update(seconds)
                bar.update(futures[future])
        except KeyboardInterrupt:
            stop.set()  # workers end their batch after the run at hand
            _stop_pool(pool, list(futures))
            raise
        finally:
            pool.shutdown(cancel_futures=True)  # returns at once after _stop_pool
    else:
        for batch in work:
            outcomes += run_groups(batch, ctx)
            bar.update(sum(map(len, batch.values())))
    return outcomes


def batches(
    groups: dict[DenseConfig, list[PruneConfig]], size: int, workers: int
) -> list[dict[DenseConfig, list[PruneConfig]]]:
    """The dense models of ``groups`` (each with its runs) in batches of one cell (dataset, model,
    width and schedule; seeds differ) of at most ``size``, and at least ``min(workers, seeds)`` per
    cell so that a lone cell keeps every worker busy; cut evenly (a cell of n in k batches: n // k
    or n // k + 1 each), the largest batches first (the longest work starts first)."""
    cells: dict[DenseConfig, list[DenseConfig]] = {}
    for dense in groups:
        cells.setdefault(replace(dense, seed=0), []).append(dense)
    work = []
    for denses in cells.values():
        n = len(denses)
        k = max(math.ceil(n / max(1, size)), min(workers, n))
        work += [{d: groups[d] for d in denses[i * n // k : (i + 1) * n // k]} for i in range(k)]
    return sorted(work, key=lambda batch: -sum(map(len, batch.values())))


def _stop_pool(pool: ProcessPoolExecutor, futures: list[Future]) -> None:
    """Cancel the queued groups, give the running ones :data:`GRACE_SECONDS` to finish the run at
    hand (a second Ctrl-C cuts it short), then end the workers: every file is written by a rename,
    so a worker ended mid-write leaves a temporary file, never a partial result."""
    # cancels the queued groups and wakes the pool's manager thread to drop them now: a cancelled one
    # it still held when the workers end would make it raise InvalidStateError (Python < 3.12)
    pool.shutdown(wait=False, cancel_futures=True)
    with contextlib.suppress(KeyboardInterrupt):
        wait(futures, timeout=GRACE_SECONDS)
    _ignore_sigint()
    processes = list((pool._processes or {}).values())  # the executor has no public handle on them
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=GRACE_SECONDS)


_STOP: Event | None = None  # a pool worker's: set by the parent on Ctrl-C


def _init_worker(threads: int, plugins: list[str], stop: Event) -> None:
    """A pool worker: ``threads`` intra-op threads, the parent's plugins (:mod:`.plugins`; already
    there when forked), deaf to Ctrl-C (the parent decides, through ``stop``), and killed with its
    parent (Linux), so a killed grid leaves no orphan."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    import_plugins(plugins)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _work_batch(
    batch: dict[DenseConfig, list[PruneConfig]], root: str, together: int, dense_together: int
) -> tuple[list[Outcome], Counter[str]]:
    """A batch of dense models and their runs in a pool worker (CPU); returns outcomes and seconds
    per phase."""
    if _STOP is not None and _STOP.is_set():
        return [], Counter()
    ctx = RunContext(Store(root), torch.device("cpu"), together=together, dense_together=dense_together)
    if _STOP is not None:
        ctx.stopping = _STOP.is_set
    return run_groups(batch, ctx), ctx.clock.seconds


def default_workers(device: torch.device) -> int:
    """Processes the local executor uses: one per CPU core on a CPU (each single-threaded: small
    models scale better over processes than over threads), one on a GPU."""
    return 1 if device.type == "cuda" else max(1, os.cpu_count() or 1)

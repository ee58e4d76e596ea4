"""Run a grid on a Dask cluster: runs are the unit of work, dense models are shared through the
result store.

Each dense model is one task and each pruned run one task that depends on it, so a dense model is
trained once, stored (weights before rows, each file written atomically) and read back by every
run that needs it. A worker that dies takes its task with it; the scheduler gives the task to
another worker, and since every file is written by a rename, two workers finishing the same task
leave one complete file. Without a scheduler address a ``LocalCluster`` is started with one
worker per GPU, or per CPU core.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from distributed.diagnostics.plugin import WorkerPlugin
from tqdm import tqdm

from ..devices import default_device
from .config import DenseConfig, PruneConfig
from .plugins import import_plugins, imported
from .results import Store
from .tasks import Outcome, RunContext, cached, prepare_dense, run_cell

CONNECT_SECONDS = 5.0  # how long to try to reach a --scheduler before saying it is unreachable
RETRIES = 2  # a task that raised is tried again this many times (a lost worker's task is rescheduled)


def worker_device() -> torch.device:
    """This worker's device: GPU ``index % count`` of a local cluster's worker, else the default."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    from distributed import get_worker

    try:
        index = int(get_worker().name)
    except (ValueError, TypeError):
        return default_device()
    return torch.device(f"cuda:{index % torch.cuda.device_count()}")


def dense_task(dense: DenseConfig, root: str) -> Outcome:
    """Train and store ``dense`` unless the store has it; return its rows."""
    table, _, _ = prepare_dense(dense, RunContext(Store(root), worker_device()), need_model=True)
    return Outcome("dense", table)


def run_task(run: PruneConfig, root: str, _dense_done: Outcome | None = None) -> Outcome:
    """One pruned run (after its dense task: ``_dense_done`` is only there to order the tasks)."""
    store = Store(root)
    table = store.read(run)
    if table is not None:
        return cached(table)
    ctx = RunContext(store, worker_device())
    dense_table, model, dataset = prepare_dense(run.dense, ctx, need_model=True)
    return run_cell(run, model, dataset, dense_table, ctx)


class _Plugins(WorkerPlugin):
    """Worker plugin that imports the client's pruneflow plugins (:mod:`.plugins`) on each worker."""

    def __init__(self, plugins: list[str]) -> None:
        self.plugins = plugins

    def setup(self, worker: object) -> None:
        import_plugins(self.plugins)


@contextmanager
def client_for(scheduler: str | None) -> Iterator[object]:
    """A client of the cluster at ``scheduler``, or of a new local cluster closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, ValueError, TypeError) as error:  # unreachable, or not an address
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ValueError(
                f"cannot reach the Dask scheduler {scheduler!r} within {CONNECT_SECONDS:g} s ({reason})"
            ) from None
        with client:
            yield client
        return
    workers = torch.cuda.device_count() or os.cpu_count() or 1
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_on_dask(
    runs: list[PruneConfig], store: Store, scheduler: str | None, progress: bool
) -> list[Outcome]:
    """Every run (and its dense model) as Dask tasks; outcomes as in :func:`pruneflow.experiment.grid.run`."""
    from distributed import as_completed

    root = str(store.root.resolve())
    with client_for(scheduler) as client:
        client.register_plugin(_Plugins(imported()), name="pruneflow-plugins")  # workers joining later too
        dense = {
            d: client.submit(dense_task, d, root, key=f"dense-{d.id}", retries=RETRIES)
            for d in dict.fromkeys(r.dense for r in runs)
        }
        tasks = [
            client.submit(run_task, r, root, dense[r.dense], key=f"run-{r.id}", retries=RETRIES) for r in runs
        ]
        outcomes = []
        try:
            with tqdm(total=len(tasks), unit="run", disable=not progress) as bar:
                for future in as_completed(tasks):
                    outcomes.append(future.result())
                    bar.update()
            outcomes.extend(f.result() for f in dense.values())
        except KeyboardInterrupt:  # queued tasks are dropped, running ones end with their worker's task
            client.cancel([*tasks, *dense.values()])
            raise
    return outcomes

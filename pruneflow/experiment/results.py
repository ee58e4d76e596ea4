"""The result store: tidy rows in one Parquet file per run, written atomically.

Layout under the results folder (default ``results/``)::

    dense/<id>.parquet   rows of a dense model (stage ``dense``), its training history in the metadata
    dense/<id>.pt        its trained weights (``torch.load(..., weights_only=True)``)
    runs/<id>.parquet    rows of a pruned model (stages ``pruned`` and ``finetuned``)

Each row is one (run, stage, class); each Parquet file carries its full config in its schema
metadata, so every number traces back to the config, seed and code version that made it, and the
fingerprint of the code that made it (:mod:`.fingerprint`), which :func:`load` adds to each row.
A dense model's file also carries its training history (training and validation loss per epoch,
:class:`pruneflow.train.History`), written with its rows in one rename; :func:`collect` returns it
as :attr:`Collected.history`.
A file is written to a temporary name and renamed: a killed run leaves no partial result, and a
file that cannot be read back is treated as missing and recomputed. Files get the process umask's
permissions (``0o666 & ~umask``, typically 0644), so workers of other users can read a shared folder.
Reading (:func:`load`, :func:`collect`) never writes: an archived, read-only folder can be analysed;
computing into a folder holds its advisory lock (:meth:`Store.lock`), so two grids into one folder
compute each run once.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..files import write_atomically
from ..train import History
from .config import DenseConfig, PruneConfig, from_dict, to_dict

DEFAULT_ROOT = Path("results")
CONFIG_KEY = b"pruneflow.config"
CODE_KEY = b"pruneflow.code"
HISTORY_KEY = b"pruneflow.history"  # a dense model's {"train": [...], "validation": [...]} as JSON
HISTORY_COLUMNS = ["dense_id", "dataset", "model", "width", "seed", "epoch", "train_loss", "validation_loss"]
LOCK = ".lock"  # the advisory lock of a folder being computed into (:meth:`Store.lock`)
STALE_SECONDS = 10.0  # an unreadable lock file older than this is a crashed writer's
SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),  # config hash of the run (dense or pruned)
        ("dense_id", pa.string()),  # config hash of its dense model
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("width", pa.float64()),
        ("n_params", pa.int64()),  # all parameters of the dense model
        ("n_prunable", pa.int64()),  # its prunable weights
        ("seed", pa.int64()),  # seed of the dense model
        ("weight_decay", pa.float64()),  # eps: training weight decay, UP's eps
        ("strategy", pa.string()),  # null for dense rows
        ("compression", pa.float64()),  # t asked for (1 for dense rows)
        ("basis", pa.string()),  # basis of the asked t: 'prunable' or 'all' (null for dense)
        ("compression_prunable", pa.float64()),  # realised t on the prunable basis
        ("compression_all", pa.float64()),  # realised t on the all-parameter basis
        ("stage", pa.string()),  # 'dense', 'pruned' (one-shot) or 'finetuned'
        ("class", pa.int64()),  # null in the single row of a failed run
        ("support", pa.int64()),  # test samples of the class
        ("recall", pa.float64()),
        ("accuracy", pa.float64()),
        ("status", pa.string()),  # 'ok', 'diverged', 'unreachable' (kept) or 'error' (retried)
        ("reason", pa.string()),
        ("code_version", pa.string()),
        ("device", pa.string()),
        ("seconds", pa.float64()),  # wall time of the run
    ]
)
COLUMNS = SCHEMA.names


class Store:
    """Reads and writes one results folder."""

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def check_writable(self, missing: Sequence[PruneConfig] = ()) -> None:
        """Raise ``ValueError`` unless the folder (or its nearest existing parent) is a writable dir;
        the message names the ``missing`` runs that writing is needed for (reading needs no write
        access: :func:`load` and :func:`collect` work on a read-only folder)."""
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.R_OK | os.W_OK | os.X_OK):
            needed = ""
            if missing:
                names = ", ".join(_describe(r) for r in missing[:3])
                more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                needed = f", and {len(missing)} runs to compute are missing there: {names}{more}"
            raise ValueError(
                f"results folder {str(self.root)!r} is not a readable, writable directory{needed}"
            )

    @contextmanager
    def lock(self, poll: float = 0.5) -> Iterator[None]:
        """Hold the folder's advisory lock while computing into it: the file ``.lock`` records the
        holder's pid, host and start time. Another holder makes this wait (saying once on stderr who
        holds it) until it is released; a stale lock (its pid dead on this host, or a record left
        unreadable for ``STALE_SECONDS``) is removed."""
        told = False
        while (holder := self._take_lock()) is not None:
            if holder and not told:
                print(
                    f"results folder {str(self.root)!r} is locked by pid {holder.get('pid')} on "
                    f"{holder.get('host')} since {holder.get('since')}; waiting (Ctrl-C to stop; delete "
                    f"{self.root / LOCK} if that process is gone)",
                    file=sys.stderr,
                )
                told = True
            time.sleep(poll)
        try:
            yield
        finally:
            record = self._lock_record()
            if record and (record.get("pid"), record.get("host")) == (os.getpid(), socket.gethostname()):
                (self.root / LOCK).unlink(missing_ok=True)

    def _lock_record(self) -> dict[str, Any] | None:
        """The lock file's record; None if there is none, {} if it cannot be read (being written)."""
        try:
            record = json.loads((self.root / LOCK).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _take_lock(self) -> dict[str, Any] | None:
        """Take the lock and return None, or return the record of its holder ({} if unreadable)."""
        path = self.root / LOCK
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            record = self._lock_record()
            if record is None:  # released meanwhile
                return {}
            if _stale(record, path) and self._lock_record() == record:
                path.unlink(missing_ok=True)
                return {}
            return record
        with os.fdopen(fd, "w") as file:
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%H:%M:%S")}
            json.dump(record, file)
        return None

    def path(self, config: DenseConfig | PruneConfig) -> Path:
        folder = "dense" if isinstance(config, DenseConfig) else "runs"
        return self.root / folder / f"{config.id}.parquet"

    def checkpoint(self, config: DenseConfig) -> Path:
        return self.root / "dense" / f"{config.id}.pt"

    def read(self, config: DenseConfig | PruneConfig) -> pa.Table | None:
        """The rows stored for ``config``, or None if missing, unreadable or an error to retry."""
        table = _read(self.path(config), errors=False)
        return None if table is None else table.replace_schema_metadata(None)

    def write(
        self, config: DenseConfig | PruneConfig, rows: list[dict[str, Any]], history: History | None = None
    ) -> None:
        """Write the rows of ``config`` (and a dense model's training ``history``) in one file."""
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        metadata = {CONFIG_KEY: json.dumps(to_dict(config)).encode(), CODE_KEY: config.code.encode()}
        if history is not None:
            metadata[HISTORY_KEY] = json.dumps(
                {"train": list(history), "validation": history.validation}
            ).encode()
        table = table.replace_schema_metadata(metadata)
        write_atomically(self.path(config), lambda tmp: pq.write_table(table, tmp))

    def save_weights(self, config: DenseConfig, state: dict[str, torch.Tensor]) -> None:
        cpu = {k: v.detach().cpu() for k, v in state.items()}
        write_atomically(self.checkpoint(config), lambda tmp: torch.save(cpu, tmp))

    def load_weights(self, config: DenseConfig) -> dict[str, torch.Tensor] | None:
        """The stored weights of ``config``, or None if missing or unreadable (any error of
        ``torch.load``: truncated, garbage, not a state dict), so that the model is retrained."""
        try:
            weights = torch.load(self.checkpoint(config), map_location="cpu", weights_only=True)
        except Exception:  # UnpicklingError, EOFError, RuntimeError, OSError, ...: as good as missing
            return None
        return weights if isinstance(weights, dict) else None

    def remove_temporary(self) -> None:
        """Delete temporary files a killed writer left behind (call when no writer is running)."""
        for leftover in self.root.glob("*/.*.tmp"):
            leftover.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        return sorted([*self.root.glob("dense/*.parquet"), *self.root.glob("runs/*.parquet")])


def _stale(record: dict[str, Any], path: Path) -> bool:
    """Whether the lock ``record`` (of the file ``path``) is a dead holder's: its pid is not alive on
    this host, or the record stayed unreadable for :data:`STALE_SECONDS`."""
    if not record:
        try:
            return time.time() - path.stat().st_mtime > STALE_SECONDS
        except FileNotFoundError:
            return False
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _read(path: Path, errors: bool = True) -> pa.Table | None:
    """The table of the result file ``path`` with its metadata; None if missing or unreadable, or
    (unless ``errors``) if it records a run that raised (status ``error``)."""
    try:
        with pq.ParquetFile(path) as file:  # a third of read_table's time on a small file
            table = file.read(use_threads=False)
    except (FileNotFoundError, OSError, pa.ArrowException):
        return None
    if table.schema.metadata is None or CONFIG_KEY not in table.schema.metadata or table.num_rows == 0:
        return None
    if not errors and "error" in table.column("status").to_pylist():
        return None
    return table


def _describe(run: PruneConfig) -> str:
    """A run in words, e.g. ``digits lenet300-100x0.25 seed 0 MP t=10 (3d5c288c6c12)``."""
    d = run.dense
    return f"{d.dataset} {d.label} seed {d.seed} {run.strategy} t={run.compression:g} ({run.id})"


def load(path: str | Path = DEFAULT_ROOT, *, errors: bool = False) -> pd.DataFrame:
    """Every readable row under the results folder ``path`` as one pandas DataFrame, with a column
    ``code_fingerprint``: the fingerprint of the code that computed the row. Rows of older code
    are kept here (a grid recomputes them under the current fingerprint and reads only those).
    Runs that raised (status ``error``: a defect such as a strategy breaking its contract, retried
    by the next grid) are records, not results: left out unless ``errors``. Only reads."""
    return _frame(t for t in (_read(f, errors) for f in Store(path).files()) if t is not None)


@dataclass(frozen=True)
class Collected:
    """The stored rows of some runs (:func:`collect`) and the runs that have none."""

    frame: pd.DataFrame  # rows of the runs and of their dense models (each once), as load gives them
    missing: list[PruneConfig]  # runs whose rows, or whose dense model's rows, are not readable
    history: pd.DataFrame  # per dense model and epoch: HISTORY_COLUMNS (:func:`history`)
    runs: tuple[str, ...] = ()  # ids of the runs collected (:meth:`subset` answers for these only)

    def subset(self, runs: Iterable[PruneConfig]) -> Collected | None:
        """What :func:`collect` gives for ``runs`` from the same folder, read from this collection
        without reading a file (the same rows in the same order); None unless every run of ``runs``
        was collected here. The book collects once and its pages take their grids' subsets."""
        runs = list(dict.fromkeys(runs))
        if not {r.id for r in runs} <= set(self.runs):
            return None
        lost = {r.id for r in self.missing}
        dense = list(dict.fromkeys(r.dense.id for r in runs))
        order = {key: i for i, key in enumerate([*dense, *(r.id for r in runs if r.id not in lost)])}
        return Collected(
            _in_order(self.frame, "run_id", order),
            [r for r in runs if r.id in lost],
            _in_order(self.history, "dense_id", {key: i for i, key in enumerate(dense)}),
            tuple(r.id for r in runs),
        )


def collect(root: str | Path, runs: Iterable[PruneConfig]) -> Collected:
    """The rows of ``runs`` and of their dense models under the results folder ``root``, each dense
    model once, with ``code_fingerprint`` as :func:`load` adds it; runs without readable rows of
    their own or of their dense model (or stored as an ``error``, to retry) are ``missing``.
    Only reads: works on a read-only folder and computes nothing."""
    store, dense, tables, missing = Store(root), {}, [], []
    runs = list(dict.fromkeys(runs))
    for run in runs:
        if run.dense not in dense:
            dense[run.dense] = _read(store.path(run.dense), errors=False)
        table = _read(store.path(run), errors=False)
        if table is None or dense[run.dense] is None:
            missing.append(run)
        else:
            tables.append(table)
    stored = [t for t in dense.values() if t is not None]
    return Collected(_frame([*stored, *tables]), missing, history(stored), tuple(r.id for r in runs))


def _in_order(frame: pd.DataFrame, column: str, order: dict[str, int]) -> pd.DataFrame:
    """The rows of ``frame`` whose ``column`` is a key of ``order``, sorted by its value (stable)."""
    rank = frame[column].map(order)
    keep = rank.notna().to_numpy()
    return frame[keep].iloc[rank[keep].to_numpy().argsort(kind="stable")].reset_index(drop=True)


def history(tables: Iterable[pa.Table]) -> pd.DataFrame:
    """Per dense model (of the result tables ``tables``, as read with their metadata) and epoch
    (1-based): its mean training and validation loss (NaN without a validation split), with
    :data:`HISTORY_COLUMNS`; models stored without a history have no rows."""
    rows = []
    for table in tables:
        stored = (table.schema.metadata or {}).get(HISTORY_KEY)
        if stored is None:
            continue
        losses, first = json.loads(stored), table.slice(0, 1).to_pylist()[0]
        validation = losses["validation"] or [float("nan")] * len(losses["train"])
        keys = {k: first[k] for k in ("dense_id", "dataset", "model", "width", "seed")}
        rows += [
            {**keys, "epoch": e, "train_loss": t, "validation_loss": v}
            for e, (t, v) in enumerate(zip(losses["train"], validation, strict=True), start=1)
        ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def _frame(tables: Iterable[pa.Table]) -> pd.DataFrame:
    """Result tables as one DataFrame with their ``code_fingerprint`` column."""
    tables = [_with_fingerprint(t) for t in tables]
    if not tables:
        return SCHEMA.empty_table().to_pandas().assign(code_fingerprint=pd.Series(dtype=object))
    return pa.concat_tables(tables).to_pandas()


def _with_fingerprint(table: pa.Table) -> pa.Table:
    code = table.schema.metadata.get(CODE_KEY, b"").decode() or None
    table = table.replace_schema_metadata(None)
    return table.append_column("code_fingerprint", pa.array([code] * table.num_rows, pa.string()))


def config(run_id: str, results: str | Path = DEFAULT_ROOT) -> DenseConfig | PruneConfig:
    """The full config of the run ``run_id`` (a dense or a pruned run) in ``results``."""
    for folder in ("runs", "dense"):
        table = _read(Path(results) / folder / f"{run_id}.parquet")
        if table is not None:
            return from_dict(json.loads(table.schema.metadata[CONFIG_KEY]))
    raise KeyError(f"no run {run_id!r} under {results}")

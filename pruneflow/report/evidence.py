"""What a page analyses, read once from the result store: the rows of its grids, split into dense,
pruned, control and failed runs, with the per-class intensification and the per-run alpha_hat.

Reading computes nothing: runs that are not stored raise :class:`MissingRuns`, whose one line
names the command that computes them (``python -m pruneflow run``; the book runs it first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from ..experiment import grid, results
from ..experiment.config import CONTROL
from ..experiment.profiles import Profile
from .tables import alphas, intensification, ok_rows


class PageInputError(ValueError):
    """A page's parameters or results do not fit; shown in a notebook as its one-line message."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"pruneflow: error: {self}"]


class MissingRuns(PageInputError):
    """The results folder lacks runs a page reads."""


@dataclass(frozen=True)
class Evidence:
    """The rows of some runs of a profile and what the question pages derive from them."""

    frame: pd.DataFrame  # tidy rows (results.SCHEMA): the runs, their controls and dense models
    stage: str  # 'finetuned' or 'pruned': the stage compared with the dense model

    @cached_property
    def _split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return ok_rows(self.frame)

    @property
    def failed(self) -> pd.DataFrame:
        """One row per failed run: its status and reason."""
        return self._split[1]

    @cached_property
    def with_control(self) -> pd.DataFrame:
        """Per (run, class) of every successful run, the t = 1 controls included: Bbar_1, Bbar_t, I_t."""
        return intensification(self._split[0], self.stage)

    @cached_property
    def table(self) -> pd.DataFrame:
        """Per (pruned run, class): Bbar_1, Bbar_t, I_t (:func:`.tables.intensification`)."""
        return self.with_control[self.with_control.strategy != CONTROL]

    @property
    def has_control(self) -> bool:
        return bool((self.with_control.strategy == CONTROL).any())

    @cached_property
    def runs(self) -> pd.DataFrame:
        """Per pruned run: alpha_hat, accuracy and the null baselines (:func:`.tables.alphas`)."""
        parts = [alphas(t) for _, t in self.table.groupby("dataset")]
        return pd.concat(parts, ignore_index=True) if parts else alphas(self.table)


@dataclass(frozen=True)
class Store:
    """The stored rows of some grids of a profile, read once; :meth:`evidence` selects from them."""

    profile: Profile
    frame: pd.DataFrame
    history: pd.DataFrame  # per dense model and epoch: training and validation loss (results.collect)

    def evidence(
        self, grids: Sequence[str], only: Mapping[str, object] | None = None, stage: str = "finetuned"
    ):
        """The :class:`Evidence` of the runs of ``grids`` matching ``only`` (as
        :func:`pruneflow.experiment.grid.select`) and of their dense models."""
        runs = grid.select(self.profile.subset(*grids).runs, only)
        ids = {r.id for r in runs} | {r.dense.id for r in runs}
        return Evidence(self.frame[self.frame.run_id.isin(ids)], stage)


def read(
    profile: Profile,
    root: str | Path,
    grids: Sequence[str],
    source: str | None = None,
    collected: results.Collected | None = None,
) -> Store:
    """Every stored row of ``grids`` of ``profile`` in the results folder ``root`` (nothing is
    computed), taken from ``collected`` (the book's one collection of the folder) where it holds
    them; raises :class:`MissingRuns` naming the command that computes what is missing
    (``source``: the profile as named on the command line)."""
    runs = profile.subset(*grids).runs
    found = collected.subset(runs) if collected is not None else None
    if found is None:
        found = results.collect(root, runs)
    if found.missing:
        raise MissingRuns(
            f"results folder {str(root)!r} lacks {len(found.missing)} of the {len(runs)} runs of "
            f"grid(s) {', '.join(grids)} of profile {profile.name!r} this page reads; compute them "
            f"first: python -m pruneflow run --profile {source or profile.name} --results {root}"
        )
    return Store(profile, found.frame, found.history)

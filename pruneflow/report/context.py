"""What a notebook of the book works with: :func:`open_page` checks its parameters, reads the rows
of its grids once (:mod:`.evidence`) and shows tables and glued sentences, exporting the tables'
CSVs where the book says (its ``book`` parameter)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from ..experiment.profiles import Profile, load_profile
from . import charts, display, evidence
from .pages import PAGES

PROFILE_ENV, RESULTS_ENV = "PRUNEFLOW_PROFILE", "PRUNEFLOW_RESULTS"
STAGES = ("finetuned", "pruned")


@dataclass
class PageContext:
    """One executing page: its profile and results folder, the rows it reads, where its tables go."""

    notebook: str
    profile_name: str
    results: str
    stage: str = "finetuned"
    export: display.Export | None = None
    params: dict[str, Any] = field(default_factory=dict)
    collected: Path | None = None  # the book's collection of the results folder (a pickle), if any

    @cached_property
    def profile(self) -> Profile:
        return load_profile(self.profile_name)

    @cached_property
    def store(self) -> evidence.Store:
        """Every row of the grids this page reads, read once."""
        collected = pd.read_pickle(self.collected) if self.collected else None
        return evidence.read(self.profile, self.results, self.grids(), self.profile_name, collected)

    def evidence(self, *grids: str, **only: object) -> evidence.Evidence:
        """The evidence of ``grids`` (default: the page's own) restricted to runs matching ``only``
        (a value of None matches every run)."""
        only = {key: value for key, value in only.items() if value is not None}
        return self.store.evidence(list(grids) or self.own_grid(), only or None, self.stage)

    def grids(self) -> list[str]:
        """Every grid of the profile this page reads: a ``grid`` parameter replaces the first grid it
        declares (a Q1 page of another architecture reads that grid, not ``strategy``)."""
        declared = PAGES[self.notebook].read(self.profile)
        if self.params.get("grid") and PAGES[self.notebook].grids:
            declared = [g for g in declared if g != PAGES[self.notebook].grids[0]]
        return list(dict.fromkeys([*declared, *self.own_grid()]))

    def own_grid(self) -> list[str]:
        """The page's own grid: its ``grid`` parameter, else the first grid it declares."""
        own = self.params.get("grid") or next(iter(PAGES[self.notebook].grids), None)
        return [own] if own else []

    def show(
        self, table: pd.DataFrame, digits: int = 3, name: str | None = None, max_columns: int = 8, fold=True
    ):
        """:func:`.display.show` with this page's CSV export."""
        return display.show(table, digits, name, max_columns, self.export, fold)

    @staticmethod
    def glue(key: str, value: object) -> None:
        """Glue ``value`` under ``key`` for the page's prose (``{glue:md}`key```): a string as
        Markdown, anything else (e.g. HTML) as it is."""
        from IPython.display import Markdown
        from myst_nb import glue

        glue(key, Markdown(value) if isinstance(value, str) else value, display=False)

    def datasets(self, grid: str) -> list[str] | None:
        """The datasets of ``grid``, sorted, or None if the profile has no such grid."""
        runs = self.profile.grids.get(grid)
        return None if runs is None else sorted({r.dense.dataset for r in runs})

    def check(self, name: str, value: object, choices: list[object]) -> None:
        """Raise :class:`.evidence.PageInputError` unless the parameter ``name`` is one of ``choices``."""
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if v not in choices:
                raise evidence.PageInputError(
                    f"{self.notebook}: parameter {name}={v!r} is not one of {', '.join(map(repr, choices))}"
                )


def open_page(
    notebook: str,
    profile: str | None = None,
    results: str | None = None,
    book: Mapping[str, str] | None = None,
    stage: str = "finetuned",
    **params: object,
) -> PageContext:
    """The context of the page ``notebook``: ``profile`` (default ``$PRUNEFLOW_PROFILE``, else quick),
    ``results`` (default ``$PRUNEFLOW_RESULTS``, else ``results``), ``book`` as the book builder
    passes it (``{"page": name, "data": folder, "collected": file}``: where the tables' CSVs go, and
    the folder's rows it collected once for every page, :meth:`.results.Collected.subset`), ``stage`` and the
    notebook's other parameters, each checked against its valid values (one-line errors); a
    parameter given as None is left unset (the page's own grid, every model of it)."""
    params = {key: value for key, value in params.items() if value is not None}
    page = PageContext(
        notebook,
        profile or os.environ.get(PROFILE_ENV, "quick"),
        results or os.environ.get(RESULTS_ENV, "results"),
        stage,
        display.Export(book["page"], Path(book["data"])) if book else None,
        dict(params),
        Path(book["collected"]) if book and book.get("collected") else None,
    )
    page.check("stage", stage, list(STAGES))
    try:
        _ = page.profile
    except ValueError as error:  # ProfileError, or an unknown shipped name
        raise evidence.PageInputError(str(error)) from None
    page.check("grid", params.get("grid", PAGES[notebook].grids[:1]), list(page.profile.grids))
    grid = params.get("grid") or next(iter(PAGES[notebook].grids), None)
    if grid is not None:
        runs = page.profile.grids[grid]
        page.check("dataset", params.get("dataset", []), list(dict.fromkeys(r.dense.dataset for r in runs)))
        page.check("model", params.get("model", []), list(dict.fromkeys(r.dense.model for r in runs)))
        for key in ("strategy", "strategies"):
            page.check(key, params.get(key, []), list(dict.fromkeys(r.strategy for r in runs)))
    charts.setup_altair()
    return page

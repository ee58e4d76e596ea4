"""The book's pages, declared once: a notebook, its part of the table of contents, the grids of a
profile it reads and whether it becomes one page per dataset.

Everything else derives from :data:`PAGES`: which pages a profile gets (:func:`plan`: a page whose
grids the profile lacks is left out), their order, the table of contents the book is built from
(:func:`toc`) and the rows a page reads (:mod:`.context`). A new question page is its notebook in
``notebooks/`` plus one :func:`declare` (here, or in a profile's plugin) and its grid in a profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..experiment.profiles import Profile
from ..registry import Registry

PARTS = ("Setup", "Questions", "Answers", "The paper")  # captions of the table of contents, in order


@dataclass(frozen=True)
class Declaration:
    """A notebook of the book: ``part`` of :data:`PARTS`, the ``grids`` it needs (the first is its
    own), ``optional`` grids it also reads when the profile has them, ``per`` a field of the dense
    configs (``"dataset"``) to make one page per value of it in its first grid, ``also`` further
    grids asking the same question of other architectures: one more page per (dataset, model) of
    each that the profile has, reading that grid (parameters ``grid``, ``dataset``, ``model``), and
    ``reference``: what its alpha_hat is measured against, in words (the methods page lists it per page)."""

    notebook: str
    part: str
    grids: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    per: str | None = None
    reference: str = ""
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"unknown part {self.part!r} of page {self.notebook!r}; valid choices: {PARTS}")
        if self.per and not self.grids:
            raise ValueError(f"page {self.notebook!r}: per={self.per!r} needs a grid to split")
        if self.also and not self.per:
            raise ValueError(f"page {self.notebook!r}: also={self.also!r} needs per (one page per value)")

    def read(self, profile: Profile) -> list[str]:
        """The grids of ``profile`` this page reads: every grid without a declaration of its own."""
        wanted = (*self.grids, *self.optional) if self.grids else tuple(profile.grids)
        return [g for g in wanted if g in profile.grids]


PAGES: Registry[Declaration] = Registry("page")


def declare(declaration: Declaration) -> Declaration:
    """Add a page to the book (in declaration order within its part)."""
    PAGES.register(declaration.notebook)(declaration)
    return declaration


DENSE = "the dense model"
DENSE_AND_CONTROL = "the dense model; its control section and table also against the t = 1 control"
declare(Declaration("methods", "Setup"))
declare(
    Declaration(
        "q1_strategy",
        "Questions",
        ("strategy",),
        per="dataset",
        also=("lenet5", "resnet"),
        reference=DENSE_AND_CONTROL,
    )
)
declare(Declaration("q2_task_complexity", "Questions", ("difficulty",), reference=DENSE))
declare(Declaration("q3_model_size", "Questions", ("model_size",), reference=DENSE))
declare(
    Declaration(
        "q4_undecayed",
        "Questions",
        ("strategy",),
        optional=("authors", "variants", "random_width"),
        reference=DENSE,
    )
)
declare(
    Declaration(
        "retraining",
        "Questions",
        ("retraining", "retraining_short"),
        reference="both, side by side: the dense model, and the t = 1 control fine-tuned the same way",
    )
)
declare(
    Declaration(
        "conclusions",
        "Answers",
        ("strategy", "model_size"),
        optional=("difficulty", "authors", "retraining", "lenet5", "resnet"),
        reference="the dense model; the claims with a reference are also tested against the t = 1 control",
    )
)
declare(Declaration("appendix", "Answers"))
declare(Declaration("paper_analyses", "The paper", ("strategy",), optional=("model_size",), reference=DENSE))
declare(
    Declaration("paper_vs_ours", "The paper", ("strategy",), optional=("authors", "lenet5"), reference=DENSE)
)


@dataclass(frozen=True)
class Page:
    """One execution of a notebook: ``book/generated/{name}.ipynb`` with ``params`` set."""

    notebook: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.notebook if self.key == "all" else f"{self.notebook}-{self.key}"


def plan(profile: Profile, frame: pd.DataFrame | None = None) -> list[Page]:
    """Every page of the book for ``profile``, part by part in declaration order; the pages of a
    ``per="dataset"`` notebook go from the easiest dataset to the hardest (mean error of its dense
    models in ``frame``, the grid's rows) when ``frame`` is given, followed by those of its ``also``
    grids, named ``{dataset}-{model}``."""
    error: dict[str, float] = {}
    if frame is not None and len(frame):
        dense = frame[(frame.stage == "dense") & (frame.status == "ok")].drop_duplicates("run_id")
        error = (1 - dense.groupby("dataset").accuracy.mean()).to_dict()
    pages = []
    for part in PARTS:
        for name in PAGES.names():
            spec = PAGES[name]
            if spec.part != part or not set(spec.grids) <= set(profile.grids):
                continue
            if spec.per is None:
                pages.append(Page(name, "all"))
                continue
            values = dict.fromkeys(getattr(r.dense, spec.per) for r in profile.grids[spec.grids[0]])
            group = [Page(name, str(v), {spec.per: v}) for v in values]
            pages += sorted(group, key=lambda page: error.get(page.params.get("dataset"), 0.0))
            for grid in (g for g in spec.also if g in profile.grids):
                cells = dict.fromkeys((r.dense.dataset, r.dense.model) for r in profile.grids[grid])
                pages += [Page(name, f"{d}-{m}", {"grid": grid, "dataset": d, "model": m}) for d, m in cells]
    return pages


def toc(pages: list[Page], folder: str = "generated") -> dict[str, Any]:
    """The jupyter-book table of contents of ``pages`` (files under ``folder``), one part per caption."""
    parts = []
    for part in PARTS:
        chapters = [{"file": f"{folder}/{p.name}"} for p in pages if PAGES[p.notebook].part == part]
        if chapters:
            parts.append({"caption": part, "chapters": chapters})
    return {"format": "jb-book", "root": "index", "parts": parts}

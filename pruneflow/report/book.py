"""Build the report: run the grid, execute every page notebook with papermill, build the book.

Pages come from the profile's ``report`` section: per notebook, named parameter groups layered
over the shared parameters (``profile``, ``results``); each group becomes the page
``book/generated/{notebook}-{key}.ipynb``, which ``_toc.yml`` picks up by glob::

    report:
      q1_strategy: {digits: {dataset: digits}, mnist1d: {dataset: mnist1d}}

Notebooks the section does not name run once, with key ``all``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ..experiment import grid
from ..experiment.profiles import Profile, load_profile

ROOT = Path(__file__).resolve().parents[2]
PAGES = (
    "methods",
    "q1_strategy",
    "q2_task_complexity",
    "q3_model_size",
    "q4_undecayed",
    "conclusions",
    "appendix",
    "paper_analyses",
    "paper_vs_ours",
)


@dataclass(frozen=True)
class Page:
    """One execution of a notebook: ``book/generated/{notebook}-{key}.ipynb``."""

    notebook: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.notebook}-{self.key}"


def plan(profile: Profile) -> list[Page]:
    """Every page of the book for ``profile``, in reading order."""
    section = profile.spec.get("report") or {}
    for notebook in section:
        if notebook not in PAGES:
            raise ValueError(f"unknown report notebook {notebook!r}; valid choices: {', '.join(PAGES)}")
    return [
        Page(notebook, key, dict(params or {}))
        for notebook in PAGES
        for key, params in (section.get(notebook) or {"all": {}}).items()
    ]


def build(
    profile: str = "quick", results: str | Path = "results", root: Path = ROOT, progress: bool = True
) -> Path:
    """Run ``profile``'s grid into ``results``, execute the pages into ``root/book/generated`` and
    build the HTML book; returns the path of ``index.html``."""
    import papermill

    start = time.perf_counter()
    loaded = load_profile(profile)
    pages = plan(loaded)
    profile_arg = str(Path(profile).resolve()) if Path(profile).suffix in (".yaml", ".yml") else profile
    results = Path(results).resolve()
    grid.run(loaded, results, progress=progress)
    generated = root / "book" / "generated"
    shutil.rmtree(generated, ignore_errors=True)
    generated.mkdir(parents=True)
    for page in pages:
        print(f"executing {page.name}", flush=True)
        output = generated / f"{page.name}.ipynb"
        papermill.execute_notebook(
            str(root / "notebooks" / f"{page.notebook}.ipynb"),
            str(output),
            parameters={"profile": profile_arg, "results": str(results), **page.params},
            cwd=str(root),
            progress_bar=False,
            kernel_name="python3",
        )
        _tidy(output, page.key)
    beside = Path(sys.executable).parent / "jupyter-book"  # the one of this environment, if any
    command = str(beside) if beside.exists() else "jupyter-book"
    subprocess.run(
        [command, "build", str(root / "book")], check=True, stdout=None if progress else subprocess.DEVNULL
    )
    index = root / "_build" / "html" / "index.html"
    print(f"report built in {time.perf_counter() - start:.0f} s: {index}")
    return index


def _tidy(path: Path, key: str) -> None:
    """Fold the parameters papermill injected, and append `` ({key})`` to the title of a page
    that is one of several of its notebook, so they differ in the toc."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.metadata["tags"].append("hide-input")
    if key != "all":
        first = next(c for c in notebook.cells if c.cell_type == "markdown")
        title, _, rest = first.source.partition("\n")
        first.source = f"{title} ({key})\n{rest}"
    nbformat.write(notebook, path)

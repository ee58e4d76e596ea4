"""Build the report: run the grid once, execute the stale pages with papermill, build the book.

The pages are those :mod:`.pages` declares for the profile (:func:`.pages.plan`); each becomes
``book/generated/{notebook}-{key}.ipynb`` (``{notebook}.ipynb`` for a notebook of one page), and
the table of contents jupyter-book reads is written beside them from the same plan
(``book/generated/_toc.yml``, :func:`.pages.toc`; the top-level ``_toc.yml`` only names the root).
Every page gets the shared parameters ``profile``, ``results`` and ``book`` (the page's name and
the folder its tables' CSVs go to, :class:`.display.Export`).

Page cache: a page is executed again only when its key changed,
``sha256(notebook, parameters, pruneflow's code, the profile's result rows)``; keys live in
``book/generated/.pages.json``. Atomic: stale pages execute into a temporary folder that replaces
``book/generated`` (and the tables' CSVs in ``book/_static/data``) only when every page succeeded.

``jupyter-book build book`` runs :func:`prepare` through the Sphinx extension
``scripts/book_pages.py`` (profile and results from ``$PRUNEFLOW_PROFILE`` / ``$PRUNEFLOW_RESULTS``);
:func:`build` (``python -m pruneflow report``) sets those and calls jupyter-book.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import yaml

from ..experiment import grid
from ..experiment import results as store
from ..experiment.fingerprint import package_fingerprint
from ..experiment.profiles import load_profile
from .pages import PAGES, Page, plan, toc

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(__file__).resolve().parents[1]
CACHE = ".pages.json"
PHASES_ENV = "PRUNEFLOW_PHASES"  # where prepare writes its phase seconds (JSON) for build to print
COLLECTED = "collected.pkl"  # the results folder's rows, collected once for every page (in the work folder)
TOC = "_toc.yml"  # written into book/generated from the page plan


class PageFailed(RuntimeError):
    """A page's notebook raised; the message names the notebook, the cell and the error."""


def source_hash(package: Path = PACKAGE) -> str:
    """The code the pages run: the fingerprint of pruneflow's modules, which a docstring or comment
    edit leaves as it is (:func:`..experiment.fingerprint.package_fingerprint`), and the bytes of its
    data files (profiles, published numbers)."""
    digest = hashlib.sha256(package_fingerprint(package).encode())
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".yaml", ".csv") and p.is_file()):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def rows_hash(frame: pd.DataFrame) -> str:
    """sha256 of the grid's result rows, independent of their order."""
    key = [c for c in ("run_id", "stage", "class") if c in frame.columns]
    rows = frame.sort_values(key).reset_index(drop=True)
    return hashlib.sha256(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).hexdigest()


def page_key(page: Page, notebook: Path, shared: dict[str, Any], code: str, rows: str) -> str:
    """The page's content hash: its notebook, its parameters, the code and the rows it reads."""
    params = json.dumps({**shared, **page.params}, sort_keys=True, default=str)
    digest = hashlib.sha256(notebook.read_bytes())
    for part in (params, code, rows):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def prepare(
    profile: str = "quick",
    results: str | Path = "results",
    root: Path = ROOT,
    progress: bool = True,
    workers: int | None = None,
) -> list[Page]:
    """Run ``profile``'s grid into ``results`` once, then execute every page whose key changed into
    a temporary folder that replaces ``root/book/generated`` when all pages succeeded; the seconds
    of both phases (``grid``, ``pages``) go to the JSON file ``$PRUNEFLOW_PHASES`` if set.

    Stale pages execute ``workers`` at a time (default: one per core).
    Raises :class:`PageFailed` (the last good pages are left as they were) if a page fails."""
    workers = workers or os.cpu_count() or 1
    loaded = load_profile(profile)
    profile_arg = str(Path(profile).resolve()) if Path(profile).suffix in (".yaml", ".yml") else profile
    results = Path(results).resolve()
    start = time.perf_counter()
    summary = grid.run(loaded, results, progress=progress)
    phases = {"grid": time.perf_counter() - start}
    start = time.perf_counter()
    if progress:
        print(summary, flush=True)
    collected = store.collect(results, loaded.runs)
    frame = collected.frame
    pages = plan(loaded, frame)
    shared = {"profile": profile_arg, "results": str(results)}
    code, rows = source_hash(), rows_hash(frame)
    generated, data = root / "book" / "generated", root / "book" / "_static" / "data"
    old = _read_cache(generated)
    work = Path(tempfile.mkdtemp(prefix=".generated-", dir=root / "book"))
    (work / "data").mkdir()
    keys, stale = {}, []
    try:
        (work / "pages").mkdir()
        for page in pages:
            source = root / "notebooks" / f"{page.notebook}.ipynb"
            keys[page.name] = key = page_key(page, source, shared, code, rows)
            output = work / "pages" / f"{page.name}.ipynb"
            if old.get(page.name) == key and (generated / output.name).is_file():
                shutil.copy2(generated / output.name, output)  # unchanged mtime: Sphinx skips it too
                for csv in data.glob(f"{page.name}-*.csv"):
                    shutil.copy2(csv, work / "data" / csv.name)
            else:
                stale.append((page, source, output))
        if stale:  # each page takes its subset: no file read again
            pd.to_pickle(collected, work / COLLECTED)
        # the pages reading the most runs first, so that the longest do not start last
        stale.sort(key=lambda item: -sum(len(loaded.grids[g]) for g in PAGES[item[0].notebook].read(loaded)))
        executed = _execute_all(stale, shared, root, work, workers, progress)
        if executed or keys != old:  # else the book is up to date: leave every file as it is
            (work / "pages" / CACHE).write_text(json.dumps(keys, indent=1) + "\n")
            (work / "pages" / TOC).write_text(yaml.safe_dump(toc(pages), sort_keys=False))
            _swap(work / "pages", generated)
            _swap(work / "data", data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    phases["pages"] = time.perf_counter() - start
    if progress:
        print(f"pages: {len(executed)} executed, {len(pages) - len(executed)} unchanged", flush=True)
    if os.environ.get(PHASES_ENV):
        Path(os.environ[PHASES_ENV]).write_text(json.dumps(phases))
    return pages


def _execute_all(
    stale: list[tuple[Page, Path, Path]], shared: dict, root: Path, work: Path, workers: int, progress: bool
) -> list[str]:
    """Execute the ``stale`` (page, notebook, output) triples, ``workers`` kernels at a time (each
    page is one process; pages read and compute independently); returns their names. The first
    page that fails cancels those not started and raises its :class:`PageFailed`."""
    if workers <= 1 or len(stale) <= 1:
        for page, source, output in stale:
            _announce(page, progress)
            _execute(page, source, output, shared, root, work)
        return [page.name for page, _, _ in stale]
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads forked
    with ProcessPoolExecutor(min(workers, len(stale)), mp_context=spawn) as pool:
        futures = []
        for page, source, output in stale:
            _announce(page, progress)
            futures.append(pool.submit(_execute, page, source, output, shared, root, work))
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return [page.name for page, _, _ in stale]


def _announce(page: Page, progress: bool) -> None:
    if progress:
        print(f"executing {page.name}", flush=True)


def _execute(page: Page, source: Path, output: Path, shared: dict, root: Path, work: Path) -> None:
    import papermill

    # where the page's tables save their CSVs, and the rows the book collected for every page
    context = {"page": page.name, "data": str(work / "data"), "collected": str(work / COLLECTED)}
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters={**shared, **page.params, "book": context},
            cwd=str(root),
            progress_bar=False,
            kernel_name="python3",
        )
    except papermill.PapermillExecutionError as error:
        raise PageFailed(
            f"page {page.name} failed: notebooks/{page.notebook}.ipynb, cell {error.cell_index} "
            f"(execution count {error.exec_count}): {error.ename}: {error.evalue}"
        ) from None
    _tidy(output, page)


def _read_cache(generated: Path) -> dict[str, str]:
    try:
        return json.loads((generated / CACHE).read_text())
    except (OSError, ValueError):
        return {}


def _swap(new: Path, target: Path) -> None:
    """Replace the folder ``target`` by ``new`` (two renames; the old one is then deleted)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def build(
    profile: str = "quick", results: str | Path = "results", root: Path = ROOT, progress: bool = True
) -> Path:
    """``jupyter-book build`` of ``root/book`` for ``profile`` and ``results`` (its extension runs
    :func:`prepare`); prints the seconds of its phases (grid, pages, book: the rest of the build)
    and returns the path of ``index.html``. Raises :class:`PageFailed` if it fails."""
    start = time.perf_counter()
    phases = Path(tempfile.mkdtemp(prefix="pruneflow-")) / "phases.json"
    load_profile(profile)  # a bad profile fails here, with its one-line ValueError
    beside = Path(sys.executable).parent / "jupyter-book"  # the one of this environment, if any
    command = str(beside) if beside.exists() else "jupyter-book"
    environ = os.environ | {
        "PRUNEFLOW_PROFILE": str(Path(profile).resolve())
        if Path(profile).suffix in (".yaml", ".yml")
        else profile,
        "PRUNEFLOW_RESULTS": str(Path(results).resolve()),
        PHASES_ENV: str(phases),
    }
    done = subprocess.run(
        [command, "build", str(root / "book")],
        env=environ,
        stdout=None if progress else subprocess.PIPE,
        stderr=subprocess.STDOUT if not progress else None,
        text=True,
    )
    if done.returncode != 0:
        tail = (done.stdout or "")[-3000:]
        raise PageFailed(f"jupyter-book build failed (exit {done.returncode}); the book is stale\n{tail}")
    index = root / "_build" / "html" / "index.html"
    total = time.perf_counter() - start
    print(f"report built in {total:.0f} s: {index}")
    print(phase_times(phases, total))
    shutil.rmtree(phases.parent, ignore_errors=True)
    return index


def phase_times(path: Path, total: float) -> str:
    """``phases: grid 612 s, pages 150 s, book 41 s (total 803 s)``: the phases :func:`prepare`
    wrote to ``path``, and the rest of the build (Sphinx) as ``book``."""
    try:
        phases = json.loads(path.read_text())
    except (OSError, ValueError):  # the extension did not run prepare (e.g. another book)
        phases = {}
    parts = {**phases, "book": total - sum(phases.values())}
    return f"phases: {', '.join(f'{k} {v:.0f} s' for k, v in parts.items())} (total {total:.0f} s)"


def _tidy(path: Path, page: Page) -> None:
    """Remove the parameters papermill injected and code cells without output (empty toggles), and
    append `` ({key})`` to the title of a page that is one of several of its notebook."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        shown = [o for o in cell.get("outputs", []) if "scrapbook" not in o.get("metadata", {})]
        silent = cell.cell_type == "code" and not shown  # glued values appear elsewhere
        if "injected-parameters" in tags or (silent and "hide-input" in tags):  # no empty toggles
            cell.metadata["tags"] = [*tags, "remove-cell"]
    if page.key != "all":
        first = next(c for c in notebook.cells if c.cell_type == "markdown")
        title, _, rest = first.source.partition("\n")
        first.source = f"{title} ({page.key})\n{rest}"
    nbformat.write(notebook, path)

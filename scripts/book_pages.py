"""Sphinx extension: ``jupyter-book build book`` executes the book's pages first.

Before the table of contents is read (``config-inited``, ahead of sphinx-external-toc), runs
:func:`pruneflow.report.book.prepare` for the profile ``$PRUNEFLOW_PROFILE`` (default ``quick``)
and the results folder ``$PRUNEFLOW_RESULTS`` (default ``results``, from the working directory):
the grid runs once (finished runs are read back from the store) and only the stale pages execute.
The table of contents is then the one written from the page plan, ``book/generated/_toc.yml``.
A failing page stops the build with its notebook, cell and error; the last good pages stay.
"""

from __future__ import annotations

import os
from pathlib import Path


def _prepare(app, config) -> None:
    from sphinx.errors import ExtensionError

    from pruneflow.report import book

    profile = os.environ.get("PRUNEFLOW_PROFILE", "quick")
    results = os.environ.get("PRUNEFLOW_RESULTS", "results")
    root = Path(app.srcdir).resolve().parent
    try:
        book.prepare(profile, results, root=root)
    except book.PageFailed as error:
        raise ExtensionError(f"{error}\nThe pages were not replaced: the book is stale.") from None
    except ValueError as error:  # bad profile or results folder
        raise ExtensionError(str(error)) from None
    config.external_toc_path = str(root / "book" / "generated" / book.TOC)


def setup(app):
    app.connect("config-inited", _prepare, priority=100)  # before sphinx_external_toc (500) reads the toc
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

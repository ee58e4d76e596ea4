"""Plugins: modules or ``.py`` files that register strategies, datasets or models.

A profile's ``plugins: [my_package.my_strategies, path/to/file.py]`` are imported by
:func:`~.profiles.load_profile`, so the CLI and every notebook kernel that loads the profile
see them; the Dask executor imports them on every worker (:func:`~.cluster.run_on_dask`).
A file is imported once per process under the module name ``pruneflow_plugin_<stem>_<hash>``,
whose source then enters the fingerprint of every run that uses what it registers.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path

IMPORTED: dict[str, str] = {}  # module name, or absolute path of a file -> module name, in import order


def import_plugin(plugin: str) -> str:
    """Import ``plugin`` (a module name, or a path ending in ``.py``) once; return its module name."""
    key = str(Path(plugin).resolve()) if plugin.endswith(".py") else plugin
    if key in IMPORTED:
        return IMPORTED[key]
    if plugin.endswith(".py"):
        path = Path(key)
        if not path.is_file():
            raise ValueError(f"plugin file {plugin!r} not found (looked for {path})")
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
        name = f"pruneflow_plugin_{path.stem}_{digest}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as error:
                del sys.modules[name]
                raise ValueError(f"plugin file {plugin!r} failed to import: {_one_line(error)}") from None
            except BaseException:
                del sys.modules[name]
                raise
    else:
        name = plugin
        try:
            importlib.import_module(plugin)
        except Exception as error:
            raise ValueError(f"plugin module {plugin!r} cannot be imported: {_one_line(error)}") from None
    IMPORTED[key] = name
    return name


def _one_line(error: Exception) -> str:
    """``Type: message`` of ``error`` on one line (a syntax error with its file and line)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def import_plugins(plugins: Iterable[str]) -> list[str]:
    """Import every plugin in order; return their module names."""
    return [import_plugin(p) for p in plugins]


def imported() -> list[str]:
    """Every plugin this process imported (files as absolute paths), for workers to import too."""
    return list(IMPORTED)

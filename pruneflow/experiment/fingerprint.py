"""Fingerprints of the code that determines a run's result, part of every run's identity.

The fingerprint of a module is sha256 over ``ast.dump`` of its parsed source with every docstring
removed, so editing a comment, a docstring or the layout changes nothing, while editing code does.
Which modules count comes from the package's import graph (:func:`import_graph`, every import
statement, also those inside functions): a dense model depends on the core modules that training
one reaches (from data, models and train: metrics, devices for its seeds, masks, ...) and on
experiment.tasks (how a run is carried out); a pruned run on every core module tasks reaches, and
on tasks. Both add the module of the dataset's loader and of the architecture (a plugin's, when
they come from one); a pruned run also its strategy's module.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from ..data import DATASETS
from ..models import MODELS
from ..strategies import STRATEGIES

PACKAGE = Path(__file__).resolve().parents[1]  # the pruneflow folder
UPPER = ("pruneflow.experiment", "pruneflow.report", "pruneflow.__main__")  # all but the science core
TASKS = "pruneflow.experiment.tasks"  # the work of one run
DENSE_ROOTS = ("pruneflow.data", "pruneflow.models", "pruneflow.train")  # what training a dense model calls


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """The dotted name of the file ``path`` of ``package``, e.g. ``pruneflow.experiment.tasks``."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` (a folder; default pruneflow's) by dotted name."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The package modules that module ``name`` imports (relative imports resolved; ``from x import
    y`` counts module ``x.y`` if there is one, else ``x``)."""
    modules = package_modules()
    path = modules[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            base = ".".join(filter(None, [base, node.module]))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


@cache
def import_graph() -> Mapping[str, frozenset[str]]:
    """Module name -> the package modules it imports, for every module of the package."""
    return {name: frozenset(imports(name)) for name in package_modules()}


def is_core(name: str) -> bool:
    """Whether ``name`` is a module of the science core (not experiment, report or the CLI)."""
    return not name.startswith(UPPER)


def core_reach(roots: Iterable[str]) -> set[str]:
    """The core modules among ``roots`` and every core module they import, directly or through
    other core modules."""
    graph, seen = import_graph(), set()
    todo = [r for r in roots if is_core(r)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [m for m in graph[name] if is_core(m)]
    return seen


DENSE_MODULES = tuple(sorted({*core_reach(DENSE_ROOTS), TASKS}))
PRUNE_MODULES = tuple(sorted({*core_reach(import_graph()[TASKS]), TASKS}))


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` without the docstring of its module, classes and functions."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(source: str) -> str:
    """sha256 of ``ast.dump`` of ``source`` without docstrings (comments never reach the AST)."""
    dump = ast.dump(_strip_docstrings(ast.parse(source)), include_attributes=False)
    return hashlib.sha256(dump.encode()).hexdigest()


@cache
def module_fingerprint(name: str) -> str:
    """Fingerprint of the imported module ``name``'s source file (read once per process)."""
    module = sys.modules.get(name) or importlib.import_module(name)
    return source_fingerprint(Path(module.__file__).read_text())


def code_fingerprint(modules: tuple[str, ...]) -> str:
    """First 12 hex digits of sha256 over the fingerprints of ``modules`` (deduplicated, sorted)."""
    parts = [f"{m}:{module_fingerprint(m)}" for m in sorted(set(modules))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def dense_fingerprint(dataset: str, model: str) -> str:
    """The code a dense model of ``dataset`` and ``model`` depends on."""
    return code_fingerprint((*DENSE_MODULES, DATASETS[dataset].__module__, MODELS[model].__module__))


def prune_fingerprint(dataset: str, model: str, strategy: str) -> str:
    """The code a pruned run depends on: its dense model's and the pruning code's (a strategy that is
    not registered, the unpruned control, adds no module of its own)."""
    owners = [DATASETS[dataset].__module__, MODELS[model].__module__]
    if strategy in STRATEGIES:
        owners.append(STRATEGIES[strategy].__module__)
    return code_fingerprint((*PRUNE_MODULES, *owners))


def package_fingerprint(package: Path = PACKAGE) -> str:
    """First 12 hex digits of sha256 over the fingerprints of every module of ``package`` (default
    pruneflow; the files as they are now): any code edit changes it, a docstring or comment edit
    does not (e.g. the key of the book's page cache)."""
    modules = package_modules(package)
    parts = [f"{name}:{source_fingerprint(path.read_text())}" for name, path in modules.items()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]

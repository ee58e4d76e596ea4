"""Fingerprints of the code that determines a run's result, part of every run's identity.

The fingerprint of a module is sha256 over ``ast.dump`` of its parsed source with every docstring
removed, so editing a comment, a docstring or the layout changes nothing, while editing code does.
A dense model depends on the modules that make it (data, models, train, metrics, devices for its
seeds, experiment.tasks for how a run is carried out) and on the module of its dataset's loader and
of its architecture (a plugin's, when they come from one); a pruned run depends on those and on
masks, strategies, pruning and batched, and on its strategy's module.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import sys
from functools import cache
from pathlib import Path

from ..data import DATASETS
from ..models import MODELS
from ..strategies import STRATEGIES

DENSE_MODULES = ("pruneflow.data", "pruneflow.models", "pruneflow.train", "pruneflow.metrics")
DENSE_MODULES += ("pruneflow.devices", "pruneflow.experiment.tasks")  # seeds, and how a run is carried out
PRUNE_MODULES = (*DENSE_MODULES, "pruneflow.masks", "pruneflow.strategies", "pruneflow.pruning")
PRUNE_MODULES += ("pruneflow.batched",)


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

"""The package's layers: the science core never imports the experiment or report layers, and no
module imports itself back through others (every import counts, also those inside functions)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pruneflow"
UPPER = ("pruneflow.experiment", "pruneflow.report")
APPLICATION = "pruneflow.__main__"  # the command line sits on top of every layer


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The pruneflow modules that module ``name`` imports (relative imports resolved)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            base = ".".join(filter(None, [base, node.module]))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: imports(name) for name in MODULES}


def test_the_walk_sees_known_imports():
    assert len(MODULES) > 20
    assert "pruneflow.experiment.tasks" in GRAPH["pruneflow.experiment.grid"]
    assert "pruneflow.experiment.cluster" in GRAPH["pruneflow.experiment.grid"]  # imported inside run()
    assert "pruneflow.data" in GRAPH["pruneflow.experiment.tasks"]  # from .. import data


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith((*UPPER, APPLICATION))))
def test_core_does_not_import_upper_layers(name):
    assert not {m for m in GRAPH[name] if m.startswith(UPPER)}


def test_experiment_does_not_import_report():
    upward = {
        (n, m) for n, ms in GRAPH.items() if n.startswith(UPPER[0]) for m in ms if m.startswith(UPPER[1])
    }
    assert not upward


def test_no_import_cycle():
    try:
        list(TopologicalSorter(GRAPH).static_order())
    except CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")

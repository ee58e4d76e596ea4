"""The package's layers: the science core never imports the experiment or report layers, and no
module imports itself back through others (every import counts, also those inside functions; the
walk is :func:`pruneflow.experiment.fingerprint.import_graph`, which also picks fingerprinted code)."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

import pytest

from pruneflow.experiment.fingerprint import import_graph, is_core, package_modules

UPPER = ("pruneflow.experiment", "pruneflow.report")
GRAPH = import_graph()


def test_the_walk_sees_known_imports():
    assert len(package_modules()) > 20
    assert "pruneflow.experiment.tasks" in GRAPH["pruneflow.experiment.grid"]
    assert "pruneflow.experiment.cluster" in GRAPH["pruneflow.experiment.grid"]  # imported inside run()
    assert "pruneflow.data" in GRAPH["pruneflow.experiment.tasks"]  # from .. import data
    assert "pruneflow.experiment.grid" in GRAPH["pruneflow.__main__"]  # from .experiment import grid


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if is_core(n)))
def test_core_does_not_import_upper_layers(name):
    assert not {m for m in GRAPH[name] if m.startswith(UPPER)}


def test_training_does_not_import_pruning():
    assert not {"pruneflow.pruning", "pruneflow.strategies"} & GRAPH["pruneflow.train"]


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

"""Result files follow the process umask (shared results folders of a cluster)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from pruneflow.experiment.config import DenseConfig
from pruneflow.experiment.results import Store
from pruneflow.train import Schedule


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_get_the_umask_permissions(tmp_path, umask, mode):
    dense = DenseConfig("digits", "lenet300-100", 0, Schedule(1, 0.05))
    row = {"run_id": dense.id, "dense_id": dense.id, "stage": "dense", "status": "ok", "class": 0}
    old = os.umask(umask)
    try:
        store = Store(tmp_path)
        store.write(dense, [row])
        store.save_weights(dense, {"w": torch.ones(2)})
    finally:
        os.umask(old)
    for path in (store.path(dense), store.checkpoint(dense)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    if umask == 0o022:
        assert store.read(dense) is not None

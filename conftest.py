"""Notebook tests (``pytest --nbval-lax notebooks``) run on the smoke profile in a scratch folder.

The notebooks' parameter cells read ``PRUNEFLOW_PROFILE`` and ``PRUNEFLOW_RESULTS``; the kernels
nbval starts inherit them from this process. The pages only read results, so the smoke grid is run
into that folder once, before the first notebook.
"""

import os
import tempfile

os.environ.setdefault("PRUNEFLOW_PROFILE", "smoke")
os.environ.setdefault("PRUNEFLOW_RESULTS", tempfile.mkdtemp(prefix="pruneflow-nbval-"))


def pytest_collection_finish(session) -> None:
    if any(str(item.fspath).endswith(".ipynb") for item in session.items):
        from pruneflow.experiment import grid

        grid.run(os.environ["PRUNEFLOW_PROFILE"], os.environ["PRUNEFLOW_RESULTS"], progress=False)

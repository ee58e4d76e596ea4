"""Notebook tests (``pytest --nbval-lax notebooks``) run on the smoke profile in a scratch folder.

The notebooks' parameter cells read ``PRUNEFLOW_PROFILE`` and ``PRUNEFLOW_RESULTS``; the kernels
nbval starts inherit them from this process.
"""

import os
import tempfile

os.environ.setdefault("PRUNEFLOW_PROFILE", "smoke")
os.environ.setdefault("PRUNEFLOW_RESULTS", tempfile.mkdtemp(prefix="pruneflow-nbval-"))

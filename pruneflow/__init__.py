"""pruneflow: does pruning intensify the differences in per-class recall of a classifier?"""

from .pruning import PruneResult, compute_mask, prune

__version__ = "0.1.0"
__all__ = ["PruneResult", "__version__", "compute_mask", "prune"]

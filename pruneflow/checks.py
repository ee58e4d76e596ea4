"""Validators of hyperparameters shared by training and pruning (neither imports the other for them)."""

from __future__ import annotations

import math
import numbers


def check_weight_decay(weight_decay: float) -> None:
    """Raise ``ValueError`` unless ``weight_decay`` is a finite number >= 0."""
    if not (
        isinstance(weight_decay, numbers.Real)
        and not isinstance(weight_decay, bool)
        and math.isfinite(weight_decay)
        and weight_decay >= 0
    ):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")

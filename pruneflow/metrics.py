"""Per-class recall and the intensification metrics of the paper, vectorised.

Every function broadcasts over leading axes (models, ratios, ...); the last axis is classes.
For a model pruned to compression t (t = 1: dense), with class-c recall R_t^c and accuracy A_t:

- recall balance            B_t^c = R_t^c - A_t
- normalised recall balance Bbar_t^c = B_t^c / A_t
- intensification ratio     I_t^c = Bbar_t^c / Bbar_1^c   (NaN where Bbar_1^c = 0)
- alpha_hat_t = sum_c Bbar_1^c Bbar_t^c / sum_c (Bbar_1^c)^2, the least-squares slope through the
  origin of Bbar_t on Bbar_1 = the mean of I_t^c weighted by (Bbar_1^c)^2.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """C[i, j] = number of samples of class i predicted as j, in one pass on the inputs' device."""
    index = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def recall_from_confusion(confusion: ArrayLike) -> np.ndarray:
    """R^c = C[c, c] / sum_j C[c, j] (NaN for a class with no sample)."""
    c = np.asarray(confusion, dtype=np.float64)
    support = c.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diagonal(c, axis1=-2, axis2=-1) / support


def accuracy_from_confusion(confusion: ArrayLike) -> np.ndarray:
    """A = trace(C) / sum(C)."""
    c = np.asarray(confusion, dtype=np.float64)
    return np.trace(c, axis1=-2, axis2=-1) / c.sum(axis=(-2, -1))


def per_class_recall(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """R^c = #(y_true = c and y_pred = c) / #(y_true = c), for c = 0 .. num_classes - 1."""
    y_true, y_pred = torch.as_tensor(np.asarray(y_true)), torch.as_tensor(np.asarray(y_pred))
    return recall_from_confusion(confusion_matrix(y_true, y_pred, num_classes).cpu().numpy())


def recall_balance(recall: ArrayLike, accuracy: ArrayLike) -> np.ndarray:
    """B^c = R^c - A."""
    return np.asarray(recall, dtype=np.float64) - np.asarray(accuracy, dtype=np.float64)[..., None]


def normalized_recall_balance(recall: ArrayLike, accuracy: ArrayLike) -> np.ndarray:
    """Bbar^c = (R^c - A) / A."""
    return recall_balance(recall, accuracy) / np.asarray(accuracy, dtype=np.float64)[..., None]


def intensification_ratio(bbar_pruned: ArrayLike, bbar_dense: ArrayLike) -> np.ndarray:
    """I_t^c = Bbar_t^c / Bbar_1^c; NaN where Bbar_1^c = 0 (count those with ``np.isnan``)."""
    pruned, dense = np.broadcast_arrays(
        np.asarray(bbar_pruned, dtype=np.float64), np.asarray(bbar_dense, dtype=np.float64)
    )
    out = np.full(pruned.shape, np.nan)
    np.divide(pruned, dense, out=out, where=dense != 0)
    return out


def alpha_hat(bbar_dense: ArrayLike, bbar_pruned: ArrayLike) -> np.ndarray:
    """Slope through the origin of Bbar_t on Bbar_1 across classes (NaN classes are left out):
    sum_c Bbar_1^c Bbar_t^c / sum_c (Bbar_1^c)^2."""
    dense, pruned = np.broadcast_arrays(
        np.asarray(bbar_dense, dtype=np.float64), np.asarray(bbar_pruned, dtype=np.float64)
    )
    ok = np.isfinite(dense) & np.isfinite(pruned)
    num = np.where(ok, dense * pruned, 0.0).sum(axis=-1)
    den = np.where(ok, dense**2, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def alpha_additive(acc_dense: ArrayLike, acc_pruned: ArrayLike) -> np.ndarray:
    """Null baseline of alpha_hat under additive degradation: A_1 / A_t.

    If pruning lowers every class recall by the same amount d, R_t^c = R_1^c - d and A_t = A_1 - d
    (A is the support-weighted mean of the recalls), so B_t^c = B_1^c and Bbar_t^c = Bbar_1^c A_1 / A_t:
    the slope through the origin is A_1 / A_t, above 1 by accuracy loss alone.
    """
    dense, pruned = np.asarray(acc_dense, dtype=np.float64), np.asarray(acc_pruned, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dense / pruned


def alpha_odds(acc_dense: ArrayLike, acc_pruned: ArrayLike) -> np.ndarray:
    """Null baseline of alpha_hat under proportional degradation: [(1 - A_t)/A_t] / [(1 - A_1)/A_1].

    If pruning multiplies every class error rate by the same factor k, 1 - R_t^c = k (1 - R_1^c) and
    1 - A_t = k (1 - A_1), so B_t^c = (1 - A_t) - (1 - R_t^c) = k B_1^c and Bbar_t^c = Bbar_1^c k A_1 / A_t:
    the slope is k A_1 / A_t, the ratio of the error odds (NaN when the dense model makes no error).
    """
    dense, pruned = np.asarray(acc_dense, dtype=np.float64), np.asarray(acc_pruned, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((1.0 - pruned) / pruned) / ((1.0 - dense) / dense)

"""The seed paper's claims, tested on our results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .tables import compare, difficulty_order, size_effect, summary, with_size_label


def verdict(marks: Sequence[str], expected: str) -> str:
    """'supported' if some cells show the ``expected`` mark and none the opposite, 'contradicted' in
    the mirror case, else 'inconclusive' (at the 99% level of the marks)."""
    opposite = {">": "<", "<": ">"}[expected]
    pro, con = sum(m == expected for m in marks), sum(m == opposite for m in marks)
    if pro and not con:
        return "supported"
    if con and not pro:
        return "contradicted"
    return "inconclusive"


CLAIMS = {
    "high": "Pruning intensifies recall differences at high ratios, t >= {high:g} (alpha_hat > 1)",
    "low": "Pruning de-intensifies them at low ratios, t <= {low:g} (alpha_hat < 1)",
    "up_alpha": "UP intensifies less than MP (alpha_hat of UP minus MP < 0)",
    "up_accuracy": "UP reaches better accuracy than MP (accuracy of UP minus MP > 0)",
    "rp_alpha": "RP intensifies least (alpha_hat of RP minus each other strategy < 0)",
    "rp_accuracy": "RP's accuracy is far worse (accuracy of RP minus MP < 0)",
    "harder": "Harder tasks intensify more (alpha_hat of the hardest minus the easiest dataset > 0)",
    "smaller_prunable": "Smaller models intensify more, prunable basis (smallest minus largest > 0)",
    "smaller_all": (
        "Smaller models intensify more, the authors' all-parameter basis (smallest minus largest > 0)"
    ),
}


def _claim(
    key: str, marks: Sequence[str], values: Sequence[float], expected: str, what: str, **thresholds: float
) -> dict:
    marks, values = list(marks), np.asarray(values, dtype=float)
    counts = {m: marks.count(m) for m in (">", "<", "?")}
    span = f"{np.nanmin(values):.3g} to {np.nanmax(values):.3g}" if len(values) else "-"
    return {
        "key": key,
        "claim": CLAIMS[key].format(**thresholds),
        "cells": len(marks),
        "evidence": f"{counts['>']} >, {counts['<']} <, {counts['?']} ?",
        "range": f"{what} {span}",
        "verdict": verdict(marks, expected) if marks else "inconclusive",
    }


def claims(
    strategy_runs: pd.DataFrame, size_runs: pd.DataFrame, high: float = 20, low: float = 4
) -> pd.DataFrame:
    """One row per claim of the seed paper: the 99% marks of the cells that test it, the range of
    our numbers, and the verdict (:func:`verdict`). ``strategy_runs`` and ``size_runs`` are the
    per-run tables (:func:`alphas`) of the strategy grid and of the model-size grid."""
    deterministic = strategy_runs[strategy_runs.strategy != "RP"]
    cells = summary(deterministic, ["dataset", "strategy"])
    hi, lo = cells[cells.compression >= high], cells[cells.compression <= low]
    up = compare(strategy_runs, "strategy", "UP", "MP")
    rp = pd.concat([compare(strategy_runs, "strategy", "RP", other) for other in ("MP", "GP", "UP")])
    rp_mp = compare(strategy_runs, "strategy", "RP", "MP")
    mp = strategy_runs[strategy_runs.strategy == "MP"]
    order = difficulty_order(mp)
    harder = compare(mp, "dataset", order.index[-1], order.index[0], by=(), paired=False)
    sizes = size_effect(with_size_label(size_runs[size_runs.strategy == "MP"]))
    rows = [
        _claim("high", hi["mark"], hi.alpha_hat, ">", "mean alpha_hat", high=high),
        _claim("low", lo["mark"], lo.alpha_hat, "<", "mean alpha_hat", low=low),
        _claim("up_alpha", up.alpha_hat_mark, up.alpha_hat_diff, "<", "difference"),
        _claim("up_accuracy", up.accuracy_mark, up.accuracy_diff, ">", "difference"),
        _claim("rp_alpha", rp.alpha_hat_mark, rp.alpha_hat_diff, "<", "difference"),
        _claim("rp_accuracy", rp_mp.accuracy_mark, rp_mp.accuracy_diff, "<", "difference"),
        _claim("harder", harder.alpha_hat_mark, harder.alpha_hat_diff, ">", "difference"),
    ]
    for basis in ("prunable", "all"):
        part = sizes[sizes.basis == basis] if len(sizes) else sizes
        rows.append(
            _claim(
                f"smaller_{basis}",
                part.get("alpha_hat_mark", []),
                part.get("alpha_hat_diff", []),
                ">",
                "difference",
            )
        )
    return pd.DataFrame(rows)

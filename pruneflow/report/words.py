"""Sentences the pages glue, from the tables of :mod:`.tables` (numbers in, words out)."""

from __future__ import annotations

import pandas as pd


def tally(summary_table: pd.DataFrame, cell: str) -> str:
    """A sentence counting the marks of a summary table: how many cells intensify, de-intensify."""
    counts = summary_table["mark"].value_counts()
    n = len(summary_table)
    return (
        f"Of the {n} {cell} cells, {counts.get('>', 0)} intensify (99% CI of alpha_hat above 1), "
        f"{counts.get('<', 0)} de-intensify (CI below 1) and {counts.get('?', 0)} are inconclusive "
        f"(CI overlaps 1)."
    )

"""Sentences the pages glue, from the tables of :mod:`.tables` (numbers in, words out)."""

from __future__ import annotations

import pandas as pd

from .tables import family


def tally(summary_table: pd.DataFrame, cell: str) -> str:
    """A sentence counting the marks of a summary table: how many cells intensify, de-intensify."""
    counts = summary_table["mark"].value_counts()
    n = len(summary_table)
    return (
        f"Of the {n} {cell} cells, {counts.get('>', 0)} intensify (99% CI of alpha_hat above 1), "
        f"{counts.get('<', 0)} de-intensify (CI below 1) and {counts.get('?', 0)} are inconclusive "
        f"(CI overlaps 1)."
    )


def architecture(runs: pd.DataFrame) -> str:
    """The models of ``runs`` in words, e.g. ``LeNet-5 (lenet5 at width 1, 61,706 parameters)``."""
    models = runs[["model", "width", "n_params"]].drop_duplicates().sort_values("n_params")
    return ", ".join(
        f"{family(m.model)} ({m.model} at width {m.width:g}, {m.n_params:,} parameters)"
        for m in models.itertuples()
    )


def families(table: pd.DataFrame) -> str:
    """Whether each claim's verdict depends on the architecture, from :func:`.claims.by_family`: the
    claims with the same verdict in every family, those whose verdict differs (each family's verdict),
    and those that only one family can test."""
    names = list(dict.fromkeys(table.family))
    if len(names) < 2:
        return f"Only one architecture family ({', '.join(names) or 'none'}) was run: no comparison."
    same, differ, alone = [], [], []
    for claim, group in table.groupby("claim", sort=False):
        if len(group) == 1:
            alone.append(f"{claim} ({group.family.iloc[0]} only)")
        elif group.verdict.nunique() == 1:
            same.append(f"{claim} ({group.verdict.iloc[0]} in {', '.join(group.family)})")
        else:
            differ.append(f"{claim} ({', '.join(f'{r.family} {r.verdict}' for r in group.itertuples())})")
    seeds = table.drop_duplicates("family").set_index("family").seeds
    parts = [f"Families (models per cell): {', '.join(f'{n} ({seeds[n]})' for n in names)}."]
    if same:
        parts.append(f"Same verdict in every family that tests it: {'; '.join(same)}.")
    if differ:
        parts.append(f"**Architecture-specific** (verdicts differ between families): {'; '.join(differ)}.")
    if alone:
        parts.append(f"Testable in one family only: {'; '.join(alone)}.")
    reach = [
        f"{_reached(group)} of {len(group)} in {name}" for name, group in table.groupby("family", sort=False)
    ]
    parts.append(
        "With these models per cell, the claims whose interval is expected to be as narrow as their "
        f"margin (the models that would settle them, as in the power table, per family): {', '.join(reach)}."
    )
    return " ".join(parts)


def _reached(group: pd.DataFrame) -> int:
    """How many claims of one family's rows have at least ``seeds_margin`` models per cell."""
    return int((group.seeds >= group.seeds_margin.astype("Float64").fillna(float("inf"))).sum())

"""Tables as a page shows them: readable headers, fixed decimals, and, in the book, the whole table
also saved as a CSV linked under it (:class:`Export`, the context the book hands each page)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# Column names as a reader reads them (the tables keep their tidy names).
HEADERS = {
    "compression": "t",
    "alpha_hat": "mean \u03b1\u0302",
    "alpha_hat_vs_control": "mean \u03b1\u0302 vs control",
    "ci_low": "99% CI low",
    "ci_high": "99% CI high",
    "dense_accuracy": "dense accuracy",
    "undefined_I": "classes with undefined I",
    "n_params": "parameters",
    "run_id": "run",
    "dense_id": "dense model",
    "alpha_hat_diff": "\u0394 \u03b1\u0302",
    "alpha_hat_low": "\u0394 \u03b1\u0302 low",
    "alpha_hat_high": "\u0394 \u03b1\u0302 high",
    "alpha_hat_mark": "\u0394 \u03b1\u0302 mark",
    "accuracy_diff": "\u0394 accuracy",
    "accuracy_low": "\u0394 acc. low",
    "accuracy_high": "\u0394 acc. high",
    "accuracy_mark": "\u0394 acc. mark",
}
# Columns shown with as many digits as they need (ratios, widths, counts), not fixed decimals.
GENERAL = {"compression", "width", "seed", "models", "classes", "n_params", "undefined_I", "epochs"}
COLLAPSE = 10  # longer tables are folded in the book (their CSV link stays in view)


@dataclass
class Export:
    """Where the book keeps a page's tables: ``{folder}/{page}-{name}.csv``, linked from the page as
    ``../_static/data/{page}-{name}.csv``; unnamed tables are numbered in order of appearance."""

    page: str
    folder: Path
    shown: int = field(default=0, init=False)

    def save(self, table: pd.DataFrame, name: str | None) -> str:
        """Write ``table`` as CSV; returns its link relative to the page."""
        self.shown += 1
        slug = re.sub(r"[^a-z0-9]+", "-", (name or f"table-{self.shown}").lower()).strip("-")
        flat = table.copy()
        if isinstance(flat.columns, pd.MultiIndex):
            flat.columns = ["_".join(map(str, c)).strip("_") for c in flat.columns]
        file = f"{self.page}-{slug}.csv"
        flat.to_csv(self.folder / file, index=False)
        return f"../_static/data/{file}"


def show(
    table: pd.DataFrame,
    digits: int = 3,
    name: str | None = None,
    max_columns: int = 8,
    export: Export | None = None,
    fold: bool = True,
):
    """A table formatted for the page: fixed decimals (ratios and counts as they are), human
    headers, no index, the first ``max_columns`` columns; with ``export`` (in the book) the whole
    table is also saved as CSV and linked under it, naming the columns only the CSV holds, and a table
    of more than :data:`COLLAPSE` rows is folded (unless not ``fold``)."""
    link = export.save(table, name) if export is not None else None
    flat = not isinstance(table.columns, pd.MultiIndex)  # side-by-side tables stay whole
    hidden = [HEADERS.get(c, str(c).replace("_", " ")) for c in table.columns[max_columns:]] if flat else []
    if link is not None and flat:
        table = table[table.columns[:max_columns]]
    general = [c for c in table.columns if GENERAL & set(c if isinstance(c, tuple) else [c])]
    style = (
        table.style.format(precision=digits, na_rep="-", thousands=",")
        .format("{:g}", subset=general, na_rep="-")
        .format_index(lambda c: HEADERS.get(c, str(c).replace("_", " ")), axis=1)
        .hide(axis="index")
        .set_table_attributes('class="pruneflow-table"')
    )
    text = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c]) and c not in general]
    style = style.set_properties(subset=text, **{"text-align": "left", "white-space": "normal"})
    if link is None:
        return style
    from IPython.display import HTML

    more = f" (also: {', '.join(hidden)})" if hidden else ""
    csv = f'<p class="pruneflow-csv"><a href="{link}" download>CSV of this table</a>{more}</p>'
    html = style.to_html()
    if fold and len(table) > COLLAPSE:
        html = f"<details><summary>Table of {len(table):,} rows (show)</summary>{html}</details>"
    return HTML(html + csv)

"""Tables for the question notebooks: the thin layer between results and the paper.

From the tidy result rows (:func:`pruneflow.experiment.results.load`):

- :func:`intensification` - one row per (pruned run, class): Bbar_1, Bbar_t and I_t;
- :func:`alphas` - one row per pruned run: alpha_hat_t and accuracy;
- :func:`summary` - per group and ratio: mean alpha_hat with its 99% CI and mark, mean accuracy;
- :func:`compare` - paired or independent differences of alpha_hat / accuracy between groups;
- :func:`excess` - per group and ratio: alpha_hat against its null baselines, and the excess with its CI;
- :func:`family` - the architecture family of a model name (MLP, LeNet-5, ResNet).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..metrics import alpha_additive, alpha_hat, alpha_odds, intensification_ratio, normalized_recall_balance
from ..stats import diff_ci, mark, mean_ci

RUN_KEYS = ["dataset", "model", "width", "n_params", "seed", "strategy", "compression", "basis", "dense_id"]
LEVEL = 0.99
FAMILIES = {"lenet300-100": "MLP", "lenet5": "LeNet-5", "resnet": "ResNet"}  # model name prefix -> family


def family(model: str) -> str:
    """The architecture family of ``model``: the family of the longest prefix of it in :data:`FAMILIES`
    (``resnet56`` -> ResNet), else the model's own name (a plugin's model is its own family)."""
    prefixes = sorted((p for p in FAMILIES if model.startswith(p)), key=len)
    return FAMILIES[prefixes[-1]] if prefixes else model


def ok_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of successful runs, one row per failed run with its status and reason)."""
    failed = frame[frame.status != "ok"].drop_duplicates("run_id")[
        [
            "run_id",
            "dataset",
            "model",
            "width",
            "seed",
            "strategy",
            "compression",
            "basis",
            "status",
            "reason",
        ]
    ]
    good = frame[frame.status == "ok"].astype({"class": "int64", "support": "int64"})
    return good, failed


def intensification(frame: pd.DataFrame, stage: str = "finetuned") -> pd.DataFrame:
    """Per (pruned run, class): Bbar_1 (dense), Bbar_t (``stage``) and I_t = Bbar_t / Bbar_1."""
    frame = frame[frame.status == "ok"]
    dense = (
        frame[frame.stage == "dense"]
        .assign(
            bbar_dense=lambda d: normalized_recall_balance(
                d.recall.to_numpy()[:, None], d.accuracy.to_numpy()
            )[:, 0]
        )[["dense_id", "class", "bbar_dense", "accuracy"]]
        .rename(columns={"accuracy": "dense_accuracy"})
    )
    pruned = frame[frame.stage == stage]
    pruned = pruned.assign(
        bbar=normalized_recall_balance(pruned.recall.to_numpy()[:, None], pruned.accuracy.to_numpy())[:, 0]
    )
    table = pruned.merge(dense, on=["dense_id", "class"], how="inner", validate="many_to_one")
    table["intensification"] = intensification_ratio(table.bbar.to_numpy(), table.bbar_dense.to_numpy())
    return table[
        [
            *RUN_KEYS,
            "run_id",
            "stage",
            "class",
            "recall",
            "accuracy",
            "dense_accuracy",
            "bbar_dense",
            "bbar",
            "intensification",
        ]
    ]


def alphas(table: pd.DataFrame) -> pd.DataFrame:
    """Per pruned run: alpha_hat_t (slope through the origin of Bbar_t on Bbar_1 across classes),
    accuracy, dense accuracy and the number of classes whose I_t is undefined (Bbar_1 = 0)."""
    runs = table.sort_values(["run_id", "class"])
    n_classes = runs.groupby("run_id")["class"].transform("size")
    if n_classes.nunique() > 1:
        raise ValueError("runs with different numbers of classes: compute alphas per dataset")
    k = int(n_classes.iloc[0]) if len(runs) else 1  # no run: empty (0, 1) arrays
    dense = runs.bbar_dense.to_numpy().reshape(-1, k)
    pruned = runs.bbar.to_numpy().reshape(-1, k)
    first = runs.groupby("run_id", sort=True).first().reset_index()
    runs = first[[*RUN_KEYS, "run_id", "accuracy", "dense_accuracy"]].assign(
        alpha_hat=alpha_hat(dense, pruned),
        undefined=(dense == 0).sum(axis=1),
    )
    return with_baselines(runs)


def with_baselines(runs: pd.DataFrame) -> pd.DataFrame:
    """Add the null baselines of alpha_hat and the excess over them, per run:
    alpha_additive = A_1/A_t, alpha_odds = odds(error_t)/odds(error_1), retained = A_t/A_1,
    excess_* = alpha_hat / alpha_* (null value 1) and excess_*_diff = alpha_hat - alpha_* (null value 0)."""
    additive = alpha_additive(runs.dense_accuracy.to_numpy(), runs.accuracy.to_numpy())
    odds = alpha_odds(runs.dense_accuracy.to_numpy(), runs.accuracy.to_numpy())
    alpha = runs.alpha_hat.to_numpy()
    return runs.assign(
        retained=runs.accuracy / runs.dense_accuracy,
        alpha_additive=additive,
        alpha_odds=odds,
        excess_additive=alpha / additive,
        excess_odds=alpha / odds,
        excess_additive_diff=alpha - additive,
        excess_odds_diff=alpha - odds,
    )


def summary(runs: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by`` and ratio t: models, mean alpha_hat with its 99% CI and mark, accuracy."""
    rows = []
    for key, group in runs.groupby([*by, "compression"], sort=True):
        mean, low, high = mean_ci(group.alpha_hat, LEVEL)
        rows.append(
            {
                **dict(zip([*by, "compression"], key, strict=True)),
                "models": len(group),
                "alpha_hat": mean,
                "ci_low": low,
                "ci_high": high,
                "mark": mark(low, high),
                "accuracy": group.accuracy.mean(),
                "dense_accuracy": group.dense_accuracy.mean(),
                "undefined_I": int(group.undefined.sum()),
            }
        )
    return pd.DataFrame(rows)


def compare(
    runs: pd.DataFrame,
    factor: str,
    a: object,
    b: object,
    by: Sequence[str] = ("dataset",),
    paired: bool = True,
) -> pd.DataFrame:
    """Per group of ``by`` and t: difference ``a - b`` of alpha_hat and of accuracy between two levels
    of ``factor``, with 99% CIs; paired by dense model when both come from the same ones."""
    rows = []
    for key, group in runs.groupby([*by, "compression"], sort=True):
        left = group[group[factor] == a].set_index("dense_id" if paired else "run_id")
        right = group[group[factor] == b].set_index("dense_id" if paired else "run_id")
        if paired:
            common = left.index.intersection(right.index)
            left, right = left.loc[common], right.loc[common]
        if len(left) < 2 or len(right) < 2:
            continue
        row = dict(zip([*by, "compression"], key, strict=True))
        rows.append(row | differences(left, right, paired) | {"models": len(left)})
    return pd.DataFrame(rows)


def differences(left: pd.DataFrame, right: pd.DataFrame, paired: bool, suffix: str = "") -> dict[str, object]:
    """``{metric}_diff``, ``_low``, ``_high`` and ``_mark`` (against 0) of mean(left - right) for
    alpha_hat and accuracy, with their 99% CIs; ``right``'s columns are ``{metric}{suffix}``."""
    row: dict[str, object] = {}
    for metric in ("alpha_hat", "accuracy"):
        diff, low, high = diff_ci(left[metric], right[f"{metric}{suffix}"], paired=paired, level=LEVEL)
        row |= {
            f"{metric}_diff": diff,
            f"{metric}_low": low,
            f"{metric}_high": high,
            f"{metric}_mark": mark(low, high, reference=0.0),
        }
    return row


def difficulty_order(runs: pd.DataFrame) -> pd.DataFrame:
    """Datasets from easiest to hardest by the mean test error of their dense models, with a label."""
    error = 1 - runs.drop_duplicates("dense_id").groupby("dataset").dense_accuracy.mean()
    order = error.sort_values().to_frame("error")
    order["label"] = [f"{d} ({e:.1%} error)" for d, e in order.error.items()]
    order["label"] = pd.Categorical(order.label, categories=list(order.label), ordered=True)
    return order


def by_difficulty(frame: pd.DataFrame, order: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each dataset named by its label of :func:`difficulty_order` (ordered categories)."""
    return frame.assign(dataset=frame.dataset.map(order.label))


def with_size_label(frame: pd.DataFrame) -> pd.DataFrame:
    """Add an ordered ``model_size`` column naming each model by width and parameter count."""
    sizes = frame.drop_duplicates("n_params").sort_values("n_params")
    labels = {
        n: f"{m} x{w:g} ({n:,} params)"
        for m, w, n in zip(sizes.model, sizes.width, sizes.n_params, strict=True)
    }
    size = frame.n_params.map(labels)
    return frame.assign(model_size=pd.Categorical(size, categories=list(labels.values()), ordered=True))


def size_effect(runs: pd.DataFrame) -> pd.DataFrame:
    """Per basis and t: alpha_hat and accuracy of the smallest minus the largest model (Welch)."""
    sizes = order_of(runs["model_size"])
    parts = [
        compare(group, "model_size", sizes[0], sizes[-1], by=("basis",), paired=False)
        for _, group in runs.groupby("basis")
    ]
    return pd.concat(parts, ignore_index=True)


def order_of(values: pd.Series) -> list[str]:
    """Display order of a grouping column: its categories if ordered, else sorted values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [str(c) for c in values.cat.categories if c in set(values)]
    return sorted(map(str, values.unique()))


def side_by_side(runs: pd.DataFrame, strategies: Sequence[str]) -> pd.DataFrame:
    """Per dataset and t: mean alpha_hat, its mark and mean accuracy of each strategy, side by side."""
    table = summary(runs, ["dataset", "strategy"])
    wide = table.pivot(
        index=["dataset", "compression"], columns="strategy", values=["alpha_hat", "mark", "accuracy"]
    )
    wide = wide.reorder_levels([1, 0], axis=1)[
        [(s, m) for s in strategies for m in ("alpha_hat", "mark", "accuracy")]
    ]
    return wide.reset_index()


def excess(runs: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by`` and t: mean alpha_hat, mean retained accuracy A_t/A_1, the mean null baselines
    (additive A_1/A_t, error odds) and the mean excess alpha_hat / baseline of each, with its 99% CI and
    mark against 1 (``>``: intensifies beyond what the accuracy loss implies)."""
    rows = []
    for key, group in runs.groupby([*by, "compression"], sort=True):
        row = dict(zip([*by, "compression"], key, strict=True)) | {
            "models": len(group),
            "alpha_hat": group.alpha_hat.mean(),
            "retained": group.retained.mean(),
            "alpha_additive": group.alpha_additive.mean(),
            "alpha_odds": group.alpha_odds.mean(),
        }
        for base in ("odds", "additive"):
            mean, low, high = mean_ci(group[f"excess_{base}"], LEVEL)
            row |= {
                f"excess_{base}": mean,
                f"excess_{base}_low": low,
                f"excess_{base}_high": high,
                f"excess_{base}_mark": mark(low, high),
            }
        rows.append(row)
    return pd.DataFrame(rows)

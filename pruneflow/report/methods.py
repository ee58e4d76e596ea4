"""The methods section as tables, read from a profile: datasets, training, pruning, deviations, the
reference of each page's alpha_hat, and the dense models' convergence (their stored histories)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pandas as pd
from torch import nn

from .. import data, models
from ..experiment.config import DenseConfig, PruneConfig
from ..experiment.profiles import Profile, load_profile
from ..masks import parameter_counts
from ..strategies import STRATEGIES
from ..train import Schedule
from .pages import PAGES, plan

# The authors' protocol (their ShrinkBench-based code), against which we state our deviations.
AUTHORS = {
    "weight_decay": "5e-4 passed, but the optimizer was rebuilt with 0: no decay applied",
    "random": "Bernoulli masks (random number of kept weights)",
    "basis": "all parameters / nonzero parameters",
    "fine_tuning": (
        "25 epochs, 10 at lr 0.1 then 5 each at 0.01, 0.001, 0.0001 (LeNet-5: 15 at 0.01), "
        "best validation epoch kept"
    ),
    "seeds": "20 to 30 models per configuration",
    "data": "MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100",
    "grad": "one training batch",
}


@dataclass(frozen=True)
class Spec:
    """A profile with its runs and dense models at hand."""

    profile: Profile
    runs: list[PruneConfig]
    dense: list[DenseConfig]

    @classmethod
    def of(cls, profile: Profile | str) -> Spec:
        """The spec of ``profile`` (a loaded one, or its name or path)."""
        loaded = profile if isinstance(profile, Profile) else load_profile(profile)
        return cls(loaded, loaded.runs, loaded.dense)


def schedule_text(s: Schedule) -> str:
    """E.g. ``3 epochs, lr 0.01 cosine`` or ``20 epochs, lr 0.1 x (10 x 1, 10 x 0.1), best validation
    epoch (10% held out)``: lr times factor f through e epochs for each stage (e, f)."""
    steps = f" x ({', '.join(f'{e} x {f:g}' for e, f in s.lr_steps)})" if s.lr_steps else " cosine"
    held = f", best validation epoch ({s.validation:.0%} held out)" if s.validation else ""
    return f"{s.epochs} epochs, lr {s.lr:g}{steps}{held}"


def seed_counts(spec: Spec) -> dict[int, list[str]]:
    """Independently trained models per cell -> the grids with that many (a grid may set its own)."""
    counts: dict[int, list[str]] = {}
    for name, runs in spec.profile.grids.items():
        counts.setdefault(len({r.dense.seed for r in runs}), []).append(name)
    return dict(sorted(counts.items(), reverse=True))


def seeds_text(spec: Spec) -> str:
    """E.g. ``30 (retraining), 20 (strategy, ...)`` models per configuration, by grid."""
    counts = seed_counts(spec)
    if len(counts) == 1:
        return str(next(iter(counts)))
    return "; ".join(f"{n} ({', '.join(grids)})" for n, grids in counts.items())


def seeds_sentence(spec: Spec) -> str:
    counts = seed_counts(spec)
    each = f"Every cell has {seeds_text(spec)}" if len(counts) == 1 else f"Cells have {seeds_text(spec)}"
    return (
        f"{each} independently trained models, each seed fixing initialisation and batch order; "
        f"{len(spec.dense)} dense models and {len(spec.runs)} pruned runs in all."
    )


BATCHNORM = (
    "**Scoring.** GP and UP (and the authors' UP) take the loss gradient with the model in training "
    "mode, so each gradient batch is normalised by its own statistics, as the authors' ShrinkBench code "
    "did; they run on copies of the running statistics, which scoring leaves unchanged (MP and RP read "
    "the weights only). **Pruning** zeroes weights of the convolutions and linear layers; BatchNorm "
    "layers are never pruned, and the pruned model (stage `pruned`) is evaluated in evaluation mode "
    "with the dense model's running statistics. **Fine-tuning** runs in training mode: every batch "
    "updates the running mean and variance (exponential average, momentum {momentum:g}), so the "
    "statistics of the pruned network are re-estimated by the fine-tuning and stage `finetuned` is "
    "evaluated with them; the pruned weights stay exactly zero throughout (their gradient is masked "
    "before each step and the weights re-zeroed after it). The $t = 1$ control gets the same "
    "fine-tuning, so re-estimated statistics alone are part of the control; models fine-tuned together "
    "(`fit_many`) each keep their own statistics."
)


def batchnorm_sentence(spec: Spec) -> str:
    """Which models of ``spec`` have BatchNorm and how its running statistics are handled at scoring,
    pruning and fine-tuning (:data:`BATCHNORM`, checked by tests/test_strategies.py and
    tests/test_batchnorm.py), or that no model has BatchNorm."""
    found: dict[str, tuple[int, float]] = {}
    for d in dict.fromkeys((d.dataset, d.model, d.width) for d in spec.dense):
        ds = data.load(d[0])
        layers = [m for m in models.build(d[1], ds.input_shape, ds.num_classes, d[2]).modules()]
        norms = [m for m in layers if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if norms:
            found[d[1]] = (len(norms), norms[0].momentum)
    if not found:
        return "No model of this profile has BatchNorm."
    which = ", ".join(f"{name} ({n} BatchNorm layers)" for name, (n, _) in found.items())
    momentum = next(iter(found.values()))[1]
    return f"Models with BatchNorm: {which}. " + BATCHNORM.format(momentum=momentum)


def precision_sentence(spec: Spec) -> str:
    """How many dense models trained, and how many runs fine-tuned, in each precision, read from
    their configs (the precision is part of every run's hash, so the rows read are the ones made
    so), and which kernel computes fp32 matrix products on a CPU."""
    said = {
        "fp32": "in fp32",
        "bf16": (
            "under bf16 autocast (matrix products and losses in bfloat16; weights, gradients and "
            "optimizer state in fp32)"
        ),
    }

    def how(counts: Counter[str], what: str) -> str:
        if len(counts) == 1:
            return f"{said[next(iter(counts))]} for every {what}"
        return " and ".join(f"for {n} {what}{'s' * (n > 1)} {said[p]}" for p, n in sorted(counts.items()))

    dense = how(Counter(d.train.precision for d in spec.dense), "model")
    tuned = how(Counter(r.finetune.precision for r in spec.runs), "run")
    return (
        f"Dense training ran {dense}, and fine-tuning {tuned}; the precision is part of each run's "
        "configuration and hash, so runs made in another precision are other runs. On a CPU, fp32 "
        "matrix products ran on oneDNN's fp32 kernels where a probe product shows they stay fp32 "
        "(about twice as fast as MKL's on AMD processors), on torch's default elsewhere; a kernel "
        "changes only the order of float sums, and each row names it in its device. So do the ways "
        "several models train at once (vmapped; an MLP's gradients by batched matrix products) and a "
        "convolutional model's channels-last layout on a CPU."
    )


def datasets_table(spec: Spec) -> pd.DataFrame:
    """Per (dataset, model, width): description, sizes, classes and parameter counts."""
    rows = []
    for d in dict.fromkeys((d.dataset, d.model, d.width) for d in spec.dense):
        ds = data.load(d[0])
        prunable, total = parameter_counts(models.build(d[1], ds.input_shape, ds.num_classes, d[2]))
        rows.append(
            {
                "dataset": d[0],
                "description": data.DATASETS[d[0]].__doc__.strip(),
                "train": len(ds.y_train),
                "test": len(ds.y_test),
                "classes": ds.num_classes,
                "model": d[1],
                "width": d[2],
                "parameters": total,
                "prunable": prunable,
            }
        )
    return pd.DataFrame(rows)


def training_table(spec: Spec) -> pd.DataFrame:
    """Per dataset and model: the dense training schedule (:func:`schedule_text`) and SGD settings."""
    rows = {
        (d.dataset, d.model): {
            "dataset": d.dataset,
            "model": d.model,
            "schedule": schedule_text(d.train),
            "momentum": d.train.momentum,
            "weight decay (eps)": d.train.weight_decay,
            "batch size": d.train.batch_size,
            "precision": d.train.precision,
        }
        for d in spec.dense
    }
    return pd.DataFrame(rows.values())


def pruning_table(spec: Spec) -> pd.DataFrame:
    """Pruning and fine-tuning settings per grid."""
    rows = []
    for name, runs in spec.profile.grids.items():
        first = runs[0]
        rows.append(
            {
                "grid": name,
                "strategies": ", ".join(dict.fromkeys(r.strategy for r in runs)),
                "ratios t": ", ".join(f"{t:g}" for t in dict.fromkeys(r.compression for r in runs)),
                "bases": ", ".join(dict.fromkeys(r.basis for r in runs)),
                "gradient batches": f"{first.grad_batches} x {first.grad_batch_size}",
                "fine-tuning": "; ".join(dict.fromkeys(schedule_text(r.finetune) for r in runs)),
            }
        )
    return pd.DataFrame(rows)


def strategies_table() -> pd.DataFrame:
    """Each registered strategy and the score it keeps the highest of."""
    return pd.DataFrame(
        [
            {
                "strategy": n,
                "score": " ".join(STRATEGIES[n].__doc__.strip().split("\n\n")[0].split()).replace("``", ""),
            }
            for n in STRATEGIES.names()
        ]
    )


def deviations_table(spec: Spec) -> pd.DataFrame:
    """Where this profile departs from the authors' protocol."""
    eps = sorted({d.train.weight_decay for d in spec.dense})
    bases = sorted({r.basis for r in spec.runs})
    tuning: dict[str, list[str]] = {}  # schedule -> models fine-tuned with it
    for model, text in dict.fromkeys((r.dense.model, schedule_text(r.finetune)) for r in spec.runs):
        tuning.setdefault(text, []).append(model)
    grads = sorted({(r.grad_batches, r.grad_batch_size) for r in spec.runs})
    ours = {
        "weight_decay": f"applied: eps = {', '.join(f'{e:g}' for e in eps)} (UP needs it)",
        "random": "an exactly-sized uniformly random subset (same sparsity as the other strategies)",
        "basis": ", ".join(bases) + " (both realised ratios are recorded for every run)",
        "fine_tuning": "; ".join(f"{', '.join(m)}: {t}" for t, m in tuning.items()) + " (eps as in training)",
        "seeds": f"{seeds_text(spec)} models per configuration",
        "data": ", ".join(sorted({d.dataset for d in spec.dense})),
        "grad": ", ".join(f"{n} batch{'es' if n != 1 else ''} of {b}" for n, b in grads),
    }
    return pd.DataFrame(
        [{"setting": key.replace("_", " "), "authors": AUTHORS[key], "ours": ours[key]} for key in AUTHORS]
    )


def references_table(profile: Profile) -> pd.DataFrame:
    """Per page of ``profile``'s book that shows alpha_hat: what its alpha_hat is measured against
    (:attr:`.pages.Declaration.reference`)."""
    pages = dict.fromkeys(p.notebook for p in plan(profile))
    return pd.DataFrame(
        [{"page": n, "alpha_hat against": PAGES[n].reference} for n in pages if PAGES[n].reference],
        columns=["page", "alpha_hat against"],
    )


def convergence(history: pd.DataFrame) -> pd.DataFrame:
    """Per dataset (``history``: per dense model and epoch, :attr:`..experiment.results.Collected.history`):
    models, epochs, the epoch of lowest validation loss (median, min and max over models: where it
    stopped falling, the weights kept) and how many models reached it before their last epoch."""
    held = history.dropna(subset=["validation_loss"])
    best = held.loc[held.groupby("dense_id").validation_loss.idxmin()]
    last = history.groupby("dense_id").epoch.max().rename("epochs")
    best = best.join(last, on="dense_id")
    table = best.groupby("dataset", sort=True).agg(
        models=("dense_id", "size"),
        epochs=("epochs", "max"),
        best_median=("epoch", "median"),
        best_min=("epoch", "min"),
        best_max=("epoch", "max"),
        before_last=("epoch", lambda e: int((e < best.loc[e.index, "epochs"]).sum())),
    )
    return table.reset_index()


def convergence_sentence(table: pd.DataFrame) -> str:
    """Where each dataset's validation loss stopped falling, from :func:`convergence`."""
    if table.empty:
        return "No dense model of this profile holds out a validation set, so none records a validation loss."
    parts = [
        f"{r.dataset} at epoch {r.best_median:g} (median; {r.best_min} to {r.best_max}) of {r.epochs}, "
        f"{r.before_last} of {r.models} models before their last epoch"
        for r in table.itertuples()
    ]
    return (
        "The validation loss of the dense models reached its lowest value, the epoch whose weights are kept, "
        f"on {'; '.join(parts)}."
    )

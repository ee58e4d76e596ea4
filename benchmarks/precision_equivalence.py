"""Does a precision or a kernel change a conclusion? One cell of a profile computed several ways.

The cell (default: quick's strategy grid on mnist5k: MP, GP, UP, RP at its ratios plus the t = 1
control, seeds 0..29 whatever the profile's count) runs through the grid in each arm (:data:`ARMS`):
the reference (fp32 on the fastest fp32 kernel, the library's default), fp32 on torch's default
kernel (MKL on a CPU: other float sums), fp32 with torch.func's per-model gradients for MLPs too
(other float sums), fp32 with every initial weight moved one fp32 step (the
noise floor: how far one rounding carries), bf16 autocast throughout, and bf16 for the fine-tuning
only (from the reference's dense models). Each arm goes to its own folder under ``--results``
(kept: a rerun reads it back). RP's draw and the batch orders do not depend on precision
(:attr:`PruneConfig.streams`), so runs pair by (strategy, t, seed). Per arm and (strategy, t): the
mean alpha_hat and fine-tuned accuracy, the mean paired difference arm - reference with its
``--level`` interval, and TOST (:meth:`pruneflow.report.inference.Estimate.tost`) against +-0.1 on
alpha_hat and +-0.01 on accuracy: equivalent when p < 1 - level. Then the claims table
(:func:`pruneflow.report.claims.evaluate`) of each arm on this cell, verdict beside verdict. The
tables are printed and saved as ``--out``.md and ``--out``.csv.

    python benchmarks/precision_equivalence.py                  # the 30-seed mnist5k cell, every arm
    python benchmarks/precision_equivalence.py --arms bf16      # the reference and bf16 only
    python benchmarks/precision_equivalence.py --seeds 5        # a quick look (too few for the claims)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import pandas as pd
import torch

from pruneflow import batched, data, devices
from pruneflow.experiment import grid, results, tasks
from pruneflow.experiment.config import DenseConfig, PruneConfig
from pruneflow.experiment.profiles import Profile, load_profile
from pruneflow.report import claims, inference

MARGINS = {"alpha_hat": 0.1, "accuracy": 0.01}


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way to compute the cell: the dense training's and the fine-tuning's precision, whether
    every initial weight of a dense model is moved by one fp32 step (``nudge``), whether fp32
    products run on torch's default kernel rather than the fastest fp32 one (``default_kernel``), and
    whether models trained together take their gradients by torch.func's ``vmap(grad)`` even where
    they are MLPs (``func_gradients``, instead of batched matrix products)."""

    dense: str
    finetune: str
    nudge: bool = False
    default_kernel: bool = False
    func_gradients: bool = False

    def runs(self, cell: list[PruneConfig]) -> tuple[PruneConfig, ...]:
        """``cell`` computed this way; RP's draw and the batch orders stay those of the fp32 runs
        (:attr:`PruneConfig.streams` leaves precision out), so runs pair by (strategy, t, seed)."""
        train = dataclasses.replace(cell[0].dense.train, precision=self.dense)
        tuned = "" if self.finetune == self.dense else self.finetune
        return tuple(
            dataclasses.replace(r, dense=dataclasses.replace(r.dense, train=train), finetune_precision=tuned)
            for r in cell
        )


BUILD, FASTEST, LAYERS = tasks.build_model, devices.onednn_keeps_fp32, batched._layers


def nudged(dense: DenseConfig, dataset: data.Dataset, device: torch.device) -> torch.nn.Module:
    """The untrained model of ``dense`` with every parameter moved one fp32 step up
    (``torch.nextafter``): a perturbation the size of one rounding, which training amplifies as it
    amplifies bf16's."""
    model = BUILD(dense, dataset, device)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.nextafter(p, torch.full_like(p, math.inf)))
    return model


REFERENCE = "fp32"
ARMS = {
    REFERENCE: Arm("fp32", "fp32"),
    "fp32, torch's kernel": Arm("fp32", "fp32", default_kernel=True),  # MKL's sums, not oneDNN's
    "fp32, torch.func gradients": Arm("fp32", "fp32", func_gradients=True),  # vmap(grad)'s sums
    "fp32, nudged": Arm("fp32", "fp32", nudge=True),  # the noise floor: one rounding of the start
    "bf16": Arm("bf16", "bf16"),
    "bf16 fine-tuning": Arm("fp32", "bf16"),  # the dense models of the fp32 arm
}


def equivalence(reference: pd.DataFrame, other: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per (strategy, t) and metric: means, paired mean difference other - reference with its
    interval, TOST p against the metric's margin, and whether the two are equivalent at ``level``."""
    keys = ["strategy", "compression", "seed"]
    both = reference.merge(other, on=keys, suffixes=("_ref", "_other"), validate="1:1")
    rows = []
    for (strategy, t), cell in both.groupby(["strategy", "compression"], sort=True):
        for metric, margin in MARGINS.items():
            diff = (cell[f"{metric}_other"] - cell[f"{metric}_ref"]).to_numpy(float)
            est = inference.pooled([diff])
            low, high = est.ci(level)
            p = est.tost(margin)
            rows.append(
                {
                    "strategy": strategy,
                    "t": t,
                    "metric": metric,
                    "seeds": est.units,
                    "reference": cell[f"{metric}_ref"].mean(),
                    "other": cell[f"{metric}_other"].mean(),
                    "difference": est.value,
                    "ci_low": low,
                    "ci_high": high,
                    "margin": margin,
                    "p_tost": p,
                    "equivalent": bool(p < 1 - level),
                }
            )
    return pd.DataFrame(rows)


def divergence(reference: pd.DataFrame, other: pd.DataFrame) -> dict[str, float]:
    """How far runs move, pooled over the cell's pruned runs: the share whose fine-tuned accuracy
    changed at all, and the median and 90th percentile of |difference| in accuracy and alpha_hat."""
    keys = ["strategy", "compression", "seed"]
    both = reference.merge(other, on=keys, suffixes=("_ref", "_other"), validate="1:1")
    found = {"runs": len(both)}
    for metric in MARGINS:
        gap = (both[f"{metric}_other"] - both[f"{metric}_ref"]).abs()
        if metric == "accuracy":
            found["changed"] = float((gap > 0).mean())
        found[f"{metric} median"] = float(gap.median())
        found[f"{metric} p90"] = float(gap.quantile(0.9))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--grid", default="strategy")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=30, help="seeds 0..N-1 (default 30)")
    parser.add_argument("--level", type=float, default=0.99)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), metavar="ARM")
    parser.add_argument("--results", default="/tmp/speed-equivalence-results")
    parser.add_argument("--out", default="/tmp/speed-equivalence", help="path of the .md and .csv, no suffix")
    args = parser.parse_args()
    full = load_profile(args.profile).subset(args.grid)
    first = [r for r in full.runs if r.dense.dataset == args.dataset and r.dense.seed == 0]
    cell = [  # seeds 0..N-1, whatever the profile's count
        dataclasses.replace(r, dense=dataclasses.replace(r.dense, seed=seed))
        for seed in range(args.seeds)
        for r in first
    ]
    per_run, verdicts, seconds = {}, {}, {}
    for name in dict.fromkeys([REFERENCE, *args.arms]):
        arm = ARMS[name]
        runs = arm.runs(cell)
        profile = Profile(full.name, full.description, full.spec, {args.grid: runs})
        folder = Path(args.results) / (
            f"{arm.dense}-{arm.finetune}{'-nudged' * arm.nudge}{'-default-kernel' * arm.default_kernel}"
            f"{'-func' * arm.func_gradients}"
        )
        start = time.perf_counter()
        tasks.build_model = nudged if arm.nudge else BUILD  # forked grid workers inherit both
        devices.onednn_keeps_fp32 = (lambda: False) if arm.default_kernel else FASTEST
        batched._layers = (lambda model: None) if arm.func_gradients else LAYERS
        print(name, grid.run(profile, folder, progress=False), flush=True)
        seconds[name] = time.perf_counter() - start
        frame = results.collect(folder, list(runs)).frame
        per_run[name] = claims.per_run(frame)
        table = claims.evaluate(frame, level=args.level, accuracy_margin=MARGINS["accuracy"], resamples=0)
        verdicts[name] = table.set_index("claim")[["estimate", "ci_low", "ci_high", "verdict"]]

    print(f"\n{args.profile}/{args.grid}, {args.dataset}, seeds 0..{args.seeds - 1}: {len(cell)} runs an arm")
    print("grid seconds (0 if read back): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    tables, lines, spread = [], [], []
    claim_table = verdicts[REFERENCE][["verdict"]].rename(columns={"verdict": REFERENCE})
    for name in per_run:
        if name == REFERENCE:
            continue
        eq = equivalence(per_run[REFERENCE], per_run[name], args.level).assign(arm=name)
        claim_table[name] = verdicts[name].verdict
        same = int((claim_table[name] == claim_table[REFERENCE]).sum())
        held = bool(eq.equivalent.all()) and same == len(claim_table)
        by_metric = ", ".join(f"{m} {g.equivalent.sum()} of {len(g)}" for m, g in eq.groupby("metric"))
        lines.append(
            f"{name} - {REFERENCE}: cells equivalent: {by_metric}; claim verdicts identical: {same} of "
            f"{len(claim_table)}: {'equivalence holds' if held else 'equivalence NOT shown'}"
        )
        tables.append(eq)
        spread.append({"arm": name, **divergence(per_run[REFERENCE], per_run[name])})
        print(f"\n{name} - {REFERENCE}, paired by seed, {args.level:.0%} interval, TOST against the margin")
        print(eq.drop(columns="arm").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nclaims on this cell (Holm within each arm), verdicts:\n{claim_table.to_string()}")
    moved = pd.DataFrame(spread).set_index("arm")
    summary = (
        f"margins: alpha_hat {MARGINS['alpha_hat']}, accuracy {MARGINS['accuracy']}, at {args.level:.0%}\n"
        + "\n".join(f"- {line}" for line in lines)
        + f"\n\nHow far runs move from {REFERENCE} (|difference| per run; changed: accuracy differs at all)"
        + f"\n\n{moved.to_markdown(floatfmt='.3g')}\n"
    )
    print(f"\n{summary}")
    out = Path(args.out)
    every = pd.concat(tables, ignore_index=True)
    every.to_csv(out.with_suffix(".csv"), index=False)
    claim_table.to_csv(out.with_name(out.name + "-claims.csv"))
    sections = "".join(
        f"\n## {name} - {REFERENCE}\n\n{eq.drop(columns='arm').to_markdown(index=False, floatfmt='.4g')}\n"
        for name, eq in every.groupby("arm", sort=False)
    )
    out.with_suffix(".md").write_text(
        f"# Precision and rounding on {args.profile}/{args.grid}, {args.dataset}, {args.seeds} seeds\n\n"
        f"{summary}\n{sections}\n## Claims\n\n{claim_table.to_markdown()}\n"
    )


if __name__ == "__main__":
    main()

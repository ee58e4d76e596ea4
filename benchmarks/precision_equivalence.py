"""Does bf16 change a conclusion? One cell of a profile computed in fp32 and in bf16, compared.

The cell (default: quick's strategy grid on mnist5k: MP, GP, UP, RP at its ratios plus the t = 1
control, 30 seeds) runs twice through the grid, once with ``precision: fp32`` and once with
``bf16`` (autocast; weights and optimizer state fp32), into ``--results``/fp32 and /bf16 (kept:
a rerun reads them back). Dense model i of both starts from the same weights and batch order, so
the runs are paired by (strategy, t, seed). Per (strategy, t): the mean alpha_hat and fine-tuned
accuracy of each precision, the mean paired difference bf16 - fp32 with its ``--level`` interval,
and TOST (:meth:`pruneflow.report.inference.Estimate.tost`) against +-0.1 on alpha_hat and +-0.01 on
accuracy: equivalent when p < 1 - level. Then the claims table (:func:`pruneflow.report.claims.evaluate`)
of each precision on this cell, verdict beside verdict. The tables are printed and saved as
``--out``.md and ``--out``.csv.

    python benchmarks/precision_equivalence.py                  # the 30-seed mnist5k cell
    python benchmarks/precision_equivalence.py --seeds 5        # a quick look (too few for the claims)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd

from pruneflow.experiment import grid, results
from pruneflow.experiment.config import PruneConfig
from pruneflow.experiment.profiles import Profile, load_profile
from pruneflow.report import claims, inference

PRECISIONS = ("fp32", "bf16")
MARGINS = {"alpha_hat": 0.1, "accuracy": 0.01}


def in_precision(run: PruneConfig, precision: str) -> PruneConfig:
    """``run`` with its dense model (and so its fine-tuning) trained in ``precision``."""
    train = dataclasses.replace(run.dense.train, precision=precision)
    return dataclasses.replace(run, dense=dataclasses.replace(run.dense, train=train))


def equivalence(per_run: dict[str, pd.DataFrame], level: float) -> pd.DataFrame:
    """Per (strategy, t) and metric: means, paired mean difference bf16 - fp32 with its interval,
    TOST p against the metric's margin, and whether the two are equivalent at ``level``."""
    keys = ["strategy", "compression", "seed"]
    both = per_run["fp32"].merge(per_run["bf16"], on=keys, suffixes=("_fp32", "_bf16"), validate="1:1")
    rows = []
    for (strategy, t), cell in both.groupby(["strategy", "compression"], sort=True):
        for metric, margin in MARGINS.items():
            diff = (cell[f"{metric}_bf16"] - cell[f"{metric}_fp32"]).to_numpy(float)
            est = inference.pooled([diff])
            low, high = est.ci(level)
            p = est.tost(margin)
            rows.append(
                {
                    "strategy": strategy,
                    "t": t,
                    "metric": metric,
                    "seeds": est.units,
                    "fp32": cell[f"{metric}_fp32"].mean(),
                    "bf16": cell[f"{metric}_bf16"].mean(),
                    "difference": est.value,
                    "ci_low": low,
                    "ci_high": high,
                    "margin": margin,
                    "p_tost": p,
                    "equivalent": bool(p < 1 - level),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--grid", default="strategy")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=30, help="seeds 0..N-1 (default 30)")
    parser.add_argument("--level", type=float, default=0.99)
    parser.add_argument("--results", default="/tmp/speed-equivalence-results")
    parser.add_argument("--out", default="/tmp/speed-equivalence", help="path of the .md and .csv, no suffix")
    args = parser.parse_args()
    full = load_profile(args.profile).subset(args.grid)
    cell = [r for r in full.runs if r.dense.dataset == args.dataset and r.dense.seed < args.seeds]
    per_run, verdicts, seconds = {}, {}, {}
    for precision in PRECISIONS:
        runs = tuple(in_precision(r, precision) for r in cell)
        profile = Profile(full.name, full.description, full.spec, {args.grid: runs})
        folder = Path(args.results) / precision
        start = time.perf_counter()
        print(grid.run(profile, folder, progress=False), flush=True)
        seconds[precision] = time.perf_counter() - start
        frame = results.collect(folder, list(runs)).frame
        per_run[precision] = claims.per_run(frame)
        table = claims.evaluate(frame, level=args.level, accuracy_margin=MARGINS["accuracy"], resamples=0)
        verdicts[precision] = table.set_index("claim")[["estimate", "ci_low", "ci_high", "verdict"]]
    eq = equivalence(per_run, args.level)
    claim_table = verdicts["fp32"].merge(
        verdicts["bf16"], left_index=True, right_index=True, suffixes=("_fp32", "_bf16")
    )
    claim_table["same"] = claim_table.verdict_fp32 == claim_table.verdict_bf16

    print(
        f"\n{args.profile}/{args.grid}, {args.dataset}, seeds 0..{args.seeds - 1}: {len(cell)} runs per "
        f"precision; grid time fp32 {seconds['fp32']:.0f} s, bf16 {seconds['bf16']:.0f} s (0 if read back)"
    )
    print(f"\nper cell, paired by seed: bf16 - fp32, {args.level:.0%} interval, TOST against the margin")
    print(eq.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nclaims on this cell (Holm within each precision), verdicts:\n{claim_table.to_string()}")
    held = bool(eq.equivalent.all() and claim_table.same.all())
    summary = (
        f"{eq.equivalent.sum()} of {len(eq)} (cell, metric) pairs equivalent at {args.level:.0%} "
        f"(margins: alpha_hat {MARGINS['alpha_hat']}, accuracy {MARGINS['accuracy']}); "
        f"{claim_table.same.sum()} of {len(claim_table)} claim verdicts identical: "
        f"{'equivalence holds' if held else 'equivalence NOT shown'}"
    )
    print(f"\n{summary}")
    out = Path(args.out)
    eq.to_csv(out.with_suffix(".csv"), index=False)
    claim_table.to_csv(out.with_name(out.name + "-claims.csv"))
    out.with_suffix(".md").write_text(
        f"# bf16 vs fp32 on {args.profile}/{args.grid}, {args.dataset}, {args.seeds} seeds\n\n"
        f"{summary}\n\n{eq.to_markdown(index=False, floatfmt='.4g')}\n\n"
        f"## Claims\n\n{claim_table.to_markdown(floatfmt='.4g')}\n"
    )


if __name__ == "__main__":
    main()

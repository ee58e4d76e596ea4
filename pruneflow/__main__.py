"""Command line.

python -m pruneflow run --profile quick [--results DIR] [--only key=value ...] [--executor dask]
                       [--scheduler ADDRESS]
python -m pruneflow report --profile quick [--results DIR]
"""

from __future__ import annotations

import argparse
import sys

from .experiment import grid
from .experiment.profiles import shipped
from .report import book


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--only takes key=value, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pruneflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or resume) a profile's grid into a results folder")
    run.add_argument("--profile", default="quick", help=f"shipped ({', '.join(shipped())}) or a YAML path")
    run.add_argument("--results", default="results", help="results folder (default: results)")
    run.add_argument(
        "--only",
        type=_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"keep runs with this field value (repeat a key for any of its values); "
        f"keys: {', '.join(grid.FILTER_KEYS)}",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--executor",
        default=None,
        choices=grid.EXECUTORS,
        help="local (this process; the default) or dask (a cluster; a new local one without --scheduler)",
    )
    run.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://host:8786 (implies dask)",
    )
    report = commands.add_parser("report", help="run the grid, execute the notebooks, build the HTML book")
    report.add_argument("--profile", default="quick", help=f"shipped ({', '.join(shipped())}) or a YAML path")
    report.add_argument("--results", default="results", help="results folder (default: results)")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            if args.scheduler and args.executor == "local":
                raise ValueError("--scheduler needs --executor dask (or leave --executor out)")
            only: dict[str, list[str]] = {}
            for key, value in args.only:
                only.setdefault(key, []).append(value)
            summary = grid.run(
                args.profile,
                args.results,
                only=only,
                progress=not args.quiet,
                executor=args.executor or ("dask" if args.scheduler else "local"),
                scheduler=args.scheduler,
            )
            print(summary)
            if summary.errored:
                print(
                    f"pruneflow: error: {summary.errored} of {summary.total} runs raised (stored as "
                    f"status 'error', never read as results; retried at the next run)",
                    file=sys.stderr,
                )
                return 1
        else:
            grid.preflight(args.profile, args.results)  # missing data: one line here, not in the book build
            book.build(args.profile, args.results)
    except ValueError as error:
        parser.exit(2, f"pruneflow: error: {error}\n")
    except book.PageFailed as error:
        parser.exit(1, f"pruneflow: error: {error}\n")
    except KeyboardInterrupt as stop:  # grid.Stopped says how far the grid got
        print(stop if isinstance(stop, grid.Stopped) else "stopped; rerun to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

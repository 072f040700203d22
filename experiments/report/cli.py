"""Figures, tables and claim verdicts for one or more study directories of run directories.

    actlab-report results/<experiment> [more dirs] [--x step|time|cpu|epoch]
        [--smooth N] [--logy] [--diag-steps S [S ...]] [--out DIR]

Writes <first dir>/report/ (or --out): README.md, PNG + PDF figures, results.{md,tex,csv},
published.csv, runs.csv. Every run directory under the given directories is read, so several
sweeps can be combined on purpose (the end-of-sweep report covers only its own sweep); the runs
read are listed on stderr and in the report. Bad input prints one line and exits with status 1.
Installed as the ``actlab-report`` console script; ``python scripts/report.py`` in a checkout is
the same.
"""

from __future__ import annotations

import argparse
import logging
import sys

from experiments.report.build import write_report
from experiments.report.figures import X_AXES
from experiments.report.runs import ReportError


def main(argv: list[str] | None = None) -> int:
    """Write the report; the exit status (0, or 1 with one line on stderr)."""
    parser = argparse.ArgumentParser(prog="actlab-report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="study directories holding run directories")
    parser.add_argument(
        "--x",
        default="step",
        choices=sorted(X_AXES),
        help="x axis of the validation curves (default: step)",
    )
    parser.add_argument(
        "--smooth",
        type=int,
        default=1,
        help="trailing mean over N logged points of the training loss",
    )
    parser.add_argument("--logy", action="store_true", help="log-scale y axes of the curves")
    parser.add_argument(
        "--diag-steps",
        type=int,
        nargs="+",
        help="steps of the per-layer diagnostics (default: first and last)",
    )
    parser.add_argument("--out", help="output directory (default: <first dir>/report)")
    args = parser.parse_args(argv)
    # the runs read and skipped, on stderr for this call only (no global logging setup)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("report: %(message)s"))
    logger = logging.getLogger("experiments.report")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        page = write_report(
            args.dirs,
            args.out,
            x=args.x,
            smooth=args.smooth,
            logy=args.logy,
            diag_steps=args.diag_steps,
        )
    except ReportError as err:
        print(f"report: {err}", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())

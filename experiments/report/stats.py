"""Per-run numbers taken straight from the CSVs, and their mean +- std over seeds.

Only ``completed`` runs enter a group's mean: a diverged run has no final metric worth
averaging (it is counted and shown in the figures instead), and a failed, interrupted or
still-running run has not reached the budget the others did.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from experiments.report.groups import Group
from experiments.report.runs import Run
from experiments.rundir import LAYER, MEASURE, SPLIT, STATUSES, STEP, TIME_S, TRAIN_LOSS, VALUE

#: the per-run scalars, in table order, with what each one means.
RUN_STATS: dict[str, str] = {
    "final_val": "validation metric at the last validation evaluation",
    "best_val": "lowest validation metric over all validation evaluations",
    "final_test": "test metric at the last test evaluation",
    "final_train_loss": "training loss at the last logged step (NaN after a divergence)",
    "steps": "last logged training step",
    "time_s": "training wall time (s, evaluation excluded) at the last logged step",
}


def _last(frame: pd.DataFrame, column: str) -> float:
    """The column's value in the last row (NaN when there is none, or it is NaN)."""
    return float(frame[column].iloc[-1]) if column in frame.columns and len(frame) else math.nan


def run_stats(run: Run) -> dict[str, float]:
    """The RUN_STATS of one run (NaN where the run logged nothing for it)."""
    metric = run.metric
    val = run.evals[run.evals[SPLIT] == "val"]
    test = run.evals[run.evals[SPLIT] == "test"]
    return {
        "final_val": _last(val, metric) if metric else math.nan,
        "best_val": float(val[metric].min()) if metric and len(val) else math.nan,
        "final_test": _last(test, metric) if metric else math.nan,
        "final_train_loss": _last(run.metrics, TRAIN_LOSS),
        "steps": _last(run.metrics, STEP),
        "time_s": _last(run.metrics, TIME_S),
    }


#: per-run scalars from diagnostics.csv that claims may compare (not in the tables: most studies
#: record no diagnostics). ``init_`` ones are read at the first diagnostics step (step 0 unless
#: the run resumed without one), ``final_`` ones at the last.
DIAGNOSTIC_STATS: dict[str, str] = {
    "final_dead_units": "mean over layers of the fraction of units never positive over the "
    "diagnostics batch, at the last diagnostics step",
    "final_zero_fraction": "mean over layers of the fraction of exactly-zero outputs, at the "
    "last diagnostics step",
    "init_zero_fraction": "mean over layers of the fraction of exactly-zero outputs, at the "
    "first diagnostics step",
    "final_abs_mean": "mean over layers of |mean output| at the last diagnostics step: how far "
    "from zero the units push the next layer's input (bias shift)",
    "init_grad_decades": "log10 of the first weight layer's gradient norm over the last weight "
    "layer's, at the first diagnostics step: below 0, the gradient shrinks towards the input",
}


def _layer_mean(rows: pd.DataFrame, metric: str, absolute: bool = False) -> float:
    """The mean over layers of ``metric`` in ``rows`` (NaN when none was recorded)."""
    values = rows.loc[rows[MEASURE] == metric, VALUE].astype(float)
    values = values.abs() if absolute else values
    return float(values.mean()) if len(values) else math.nan


def _grad_decades(rows: pd.DataFrame) -> float:
    """log10(first layer's gradient norm / last layer's); NaN without two positive norms."""
    norms = rows[rows[MEASURE] == "grad_norm"].sort_values(LAYER)[VALUE].astype(float)
    if len(norms) < 2 or not (norms > 0).all():
        return math.nan
    return float(np.log10(norms.iloc[0] / norms.iloc[-1]))


def diagnostic_stats(run: Run) -> dict[str, float]:
    """The DIAGNOSTIC_STATS of one run (NaN when it recorded no diagnostics)."""
    frame = run.diagnostics
    if frame is None or not len(frame):
        return dict.fromkeys(DIAGNOSTIC_STATS, math.nan)
    first = frame[frame[STEP] == frame[STEP].min()]
    last = frame[frame[STEP] == frame[STEP].max()]
    return {
        "final_dead_units": _layer_mean(last, "dead_units"),
        "final_zero_fraction": _layer_mean(last, "zero_fraction"),
        "init_zero_fraction": _layer_mean(first, "zero_fraction"),
        "final_abs_mean": _layer_mean(last, "mean", absolute=True),
        "init_grad_decades": _grad_decades(first),
    }


#: a classifier has learned only once its loss is this far below chance, ln(classes).
CHANCE_MARGIN = 0.01


def converged(run: Run) -> bool:
    """Completed, its last training loss below its first, and, for a classifier, at least 1%
    below chance, ln(classes) (it learned something).

    A stalled net finishes without diverging: its loss sinks from wherever the init put it to
    ln(classes) and stays there (plain30_init_cpu: ELU under He fan-in ended at 2.319 from a
    first logged 3.31, val error 91%), so a falling loss alone does not tell it from a net that
    trained.
    """
    losses = run.metrics[TRAIN_LOSS].to_numpy(dtype=float)
    losses = losses[np.isfinite(losses)]
    if run.status != "completed" or len(losses) < 2 or not losses[-1] < losses[0]:
        return False
    classes = (run.summary.get("data") or {}).get("num_classes")
    return not classes or losses[-1] < (1 - CHANCE_MARGIN) * math.log(classes)


def runs_frame(groups: list[Group]) -> pd.DataFrame:
    """One row per run: group, seed, status and its RUN_STATS."""
    rows = [
        {
            "group": g.label,
            "run": run.name,
            "seed": run.config.get("seed"),
            "status": run.status,
            **run_stats(run),
            "path": str(run.path),
        }
        for g in groups
        for run in g.runs
    ]
    return pd.DataFrame(rows)


def group_frame(groups: list[Group]) -> pd.DataFrame:
    """One row per group: run counts by status, then mean/std/n of each stat (completed runs).

    The std is the sample standard deviation (ddof=1): NaN for a single run.
    """
    per_run = runs_frame(groups)
    rows = []
    for g in groups:
        mine = per_run[(per_run["group"] == g.label) & (per_run["status"] == "completed")]
        row: dict[str, object] = {"group": g.label, "runs": len(g.runs)}
        row.update({s: g.status_counts.get(s, 0) for s in STATUSES})
        for stat in RUN_STATS:
            row[f"{stat}_mean"] = mine[stat].mean()
            row[f"{stat}_std"] = mine[stat].std()
            row[f"{stat}_n"] = int(mine[stat].count())
        rows.append(row)
    return pd.DataFrame(rows)

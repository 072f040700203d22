"""Outcome grid for a two-factor sweep (unit x init, unit x depth), as the MPELU paper shows its
30-layer nets: one cell per combination, coloured by the final training loss relative to
chance, with what the seeds did written in it and the paper's verdict beside ours.

Chance is ln(classes) for a classifier and ln(vocabulary) for a language model (the loss of
a uniform guess); 1 means the net learned nothing, 0 perfect training fit. A seed
*converged* (``stats.converged``: completed, loss fell, at least 1% below chance), *stalled*
(completed without converging), *diverged*, or did not finish (its status is written).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np

from experiments.report import style
from experiments.report.factors import Factor
from experiments.report.groups import Group
from experiments.report.runs import Run
from experiments.report.stats import converged, run_stats

#: how each outcome is written in a cell, in this order.
OUTCOMES = ("converged", "stalled", "diverged", "failed", "interrupted", "running")


def outcome(run: Run) -> str:
    if run.status == "completed":
        return "converged" if converged(run) else "stalled"
    return run.status


def chance_loss(run: Run) -> float:
    """ln(classes) or ln(vocabulary) from the run's data summary; NaN when neither is there."""
    data = run.summary.get("data") or {}
    size = data.get("num_classes") or data.get("vocab_size")
    return math.log(size) if size and size > 1 else math.nan


def cell_text(group: Group, expected: str | None) -> str:
    counts = Counter(outcome(r) for r in group.runs)
    lines = [f"{o} {counts[o]}/{len(group.runs)}" for o in OUTCOMES if counts[o]]
    if expected:
        lines.append(f"paper: {expected}")
    return "\n".join(lines)


def relative_loss(group: Group) -> float:
    """Mean over completed seeds of final training loss / chance (NaN: none completed)."""
    ratios = [run_stats(r)["final_train_loss"] / chance_loss(r) for r in group.completed]
    ratios = [x for x in ratios if math.isfinite(x)]
    if not ratios and group.completed:  # chance unknown: the loss itself
        ratios = [run_stats(r)["final_train_loss"] for r in group.completed]
    return float(np.mean(ratios)) if ratios else math.nan


@style.styled
def plot_grid(
    groups: list[Group], rows: Factor, cols: Factor, expected: dict[str, str], out: Path
) -> Path:
    """The grid figure at ``out``/outcome_grid; ``expected`` maps a group label to the
    outcome the paper (preset claims or published values) gives it."""
    cells = {(rows.level_of(g), cols.level_of(g)): g for g in groups}
    known = any(math.isfinite(chance_loss(r)) for g in groups for r in g.runs)
    values = np.full((len(rows.levels), len(cols.levels)), np.nan)
    for (r, c), g in cells.items():
        values[rows.levels.index(r), cols.levels.index(c)] = relative_loss(g)
    width = min(7.0, 1.0 + 1.05 * len(cols.levels))
    fig, ax = style.subplots(figsize=(width, 0.45 + 0.62 * len(rows.levels)))
    cmap = matplotlib.colormaps["RdYlGn_r"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=cmap,
        vmin=0.0,
        vmax=1.1 if known else None,
        aspect="auto",
    )
    for (r, c), g in cells.items():
        i, j = rows.levels.index(r), cols.levels.index(c)
        ax.text(j, i, cell_text(g, expected.get(g.label)), ha="center", va="center", fontsize=5.5)
    ax.set_xticks(range(len(cols.levels)), [cols.text(v) for v in cols.levels])
    ax.set_yticks(range(len(rows.levels)), [rows.text(v) for v in rows.levels])
    ax.set_xlabel(cols.name)
    ax.set_ylabel(rows.name)
    ax.grid(False)
    ax.tick_params(length=0)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("final train loss / chance" if known else "final train loss (nats)", fontsize=6.5)
    bar.ax.tick_params(labelsize=6)
    stem = out / "outcome_grid"
    style.save(fig, str(stem))
    return stem

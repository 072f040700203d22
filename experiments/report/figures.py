"""Paper-style figures: curves with a ±1 std band over seeds, and per-layer diagnostics.

Every figure of a report draws a group with the same colour and line style (set once by
``groups.group_runs``). Bands and means use completed runs only; every other run is drawn
on its own as a thin line: a diverged run ends in an ``x`` at its last logged step (at the
top edge when its last value is NaN or inf), a failed, interrupted or still-running run
ends in its status written out. When the completed runs fix the y range, a diverged curve
that shoots off the axes is cut there and its ``x`` sits on the edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D

from experiments.report import style
from experiments.report.groups import Group
from experiments.report.runs import ReportError, Run

#: the --x choices and the column each one reads.
X_AXES = {"step": "step", "time": "time_s", "epoch": "epoch"}
_X_LABELS = {"step": "step", "time_s": "training time (s)", "epoch": "epoch"}
_DIAG_NAMES = {
    "zero_fraction": "fraction of zero outputs",
    "dead_units": "fraction of dead units",
    "dead_fraction": "fraction of dead units",
    "mean": "mean output",
    "std": "output std",
    "grad_norm": "weight gradient norm",
}
_HEIGHT = 2.4


@dataclass(frozen=True)
class Figure:
    """A written figure: the path stem (PNG + PDF) and a caption for the index."""

    stem: Path
    caption: str


def _run_curve(frame: pd.DataFrame, x: str, y: str, smooth: int) -> pd.DataFrame:
    """Finite (step, x, y) rows of one run, y smoothed by a trailing mean over ``smooth`` rows."""
    columns = list(dict.fromkeys(["step", x, y]))
    curve = frame[columns].astype(float)
    curve = curve[np.isfinite(curve).all(axis=1)].reset_index(drop=True)
    if smooth > 1:
        curve[y] = curve[y].rolling(smooth, min_periods=1).mean()
    return curve


def aggregate(curves: list[pd.DataFrame], x: str, y: str) -> pd.DataFrame:
    """Mean, std and n of y over runs at each logged step, placed at the runs' mean x there.

    Replicates log the same steps (and epochs), so matching on the step is exact; their
    wall-clock times differ, and the mean time of a step is where its mean loss is drawn,
    so every run counts along the whole curve instead of only where all times overlap.
    """
    stacked = pd.concat(curves, ignore_index=True)
    by_step = stacked.groupby("step")
    out = by_step[y].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    out[x] = out.index if x == "step" else by_step[x].mean()
    return out.reset_index(drop=True)


def _legend_label(group: Group) -> str:
    counts = group.status_counts
    others = [f"{counts[s]} {s}" for s in sorted(counts) if s != "completed"]
    return f"{group.label} (n={counts.get('completed', 0)}{''.join(', ' + o for o in others)})"


class PlainLogFormatter(ticker.LogFormatter):
    """Log-axis tick labels as plain numbers (2.8, 0.05, 1000; 1e-05 below 1e-4), where
    matplotlib's default writes 2.8x10^0; which ticks get a label is still matplotlib's choice
    (every minor tick within a decade, fewer as the range grows)."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _limits(values: list[np.ndarray], logy: bool) -> tuple[float, float] | None:
    if not values:
        return None
    both = np.concatenate(values)
    both = both[np.isfinite(both) & ((both > 0) if logy else True)]
    if not len(both):
        return None
    lo, hi = float(both.min()), float(both.max())
    if logy:
        return lo / 1.15, hi * 1.15
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
    return lo - pad, hi + pad


def plot_curves(
    groups: list[Group],
    frame_of: Callable[[Run], pd.DataFrame],
    *,
    x: str,
    y: str,
    ylabel: str,
    scale: float = 1.0,
    smooth: int = 1,
    logy: bool = False,
) -> plt.Figure:
    """One figure of y against x for every group; legend ordered by final mean (best first).

    Returned unsaved (``style.save`` writes it) so that callers can inspect what was drawn.
    """
    style.apply()
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH, _HEIGHT))
    finals: dict[str, float] = {}
    handles: dict[str, Line2D] = {}
    core: list[np.ndarray] = []
    loose: list[tuple[Group, Run, pd.DataFrame]] = []
    for g in groups:
        done = [c for c in (_run_curve(frame_of(r), x, y, smooth) for r in g.completed) if len(c)]
        if done:
            agg = aggregate(done, x, y)
            mean, std = agg["mean"].to_numpy() * scale, agg["std"].fillna(0).to_numpy() * scale
            (line,) = ax.plot(agg[x], mean, color=g.color, linestyle=g.linestyle)
            ax.fill_between(agg[x], mean - std, mean + std, color=g.color, alpha=0.2, lw=0)
            core += [mean - std, mean + std]
            finals[g.label], handles[g.label] = float(mean[-1]), line
        for run in g.runs:
            curve = _run_curve(frame_of(run), x, y, smooth)
            if run.status != "completed" and len(curve):
                loose.append((g, run, curve))
    limits = _limits(core, logy)
    for g, run, curve in loose:
        xs, ys = list(curve[x]), list(curve[y] * scale)
        logged = frame_of(run)[[x, y]].dropna(subset=[x])
        if run.status == "diverged" and not np.isfinite(float(logged[y].iloc[-1])):
            # the loss blew up (NaN/inf) after the last finite point: go to where it ended
            xs.append(float(logged[x].iloc[-1]))
            ys.append(limits[1] if limits else ys[-1])
        end_x, end_y = xs[-1], ys[-1]
        if limits:
            end_y = min(max(end_y, limits[0]), limits[1])
        (line,) = ax.plot(xs, ys, color=g.color, linestyle=g.linestyle, lw=0.7, alpha=0.8)
        handles.setdefault(g.label, line)
        if run.status == "diverged":
            ax.plot([end_x], [end_y], marker="x", color=g.color, ms=6, mew=1.5, clip_on=False)
        else:
            ax.annotate(
                run.status,
                (end_x, end_y),
                fontsize=5.5,
                color=g.color,
                xytext=(2, 2),
                textcoords="offset points",
                annotation_clip=False,
            )
    if limits:
        ax.set_ylim(*limits)
    if logy:
        ax.set_yscale("log")
        for axis_labels in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_labels(PlainLogFormatter(labelOnlyBase=False))
    ax.set_xlabel(_X_LABELS.get(x, x))
    ax.set_ylabel(ylabel)
    order = sorted(handles, key=lambda lbl: (lbl not in finals, finals.get(lbl, 0.0), lbl))
    by_label = {g.label: g for g in groups}
    entries = [(handles[lbl], _legend_label(by_label[lbl])) for lbl in order]
    if any(r.status == "diverged" for _, r, _ in loose):
        entries.append((Line2D([], [], color="black", marker="x", ls="none", mew=1.5), "diverged"))
    if entries:
        _legend_below(ax, *zip(*entries, strict=True))
    else:
        ax.text(0.5, 0.5, "nothing logged yet", ha="center", transform=ax.transAxes)
    return fig


def _layer_profile(frame: pd.DataFrame) -> np.ndarray:
    """Values per layer in forward order (numeric layer ids sorted, names as logged)."""
    numeric = pd.api.types.is_numeric_dtype(frame["layer"])
    return frame.groupby("layer", sort=numeric)["value"].mean().to_numpy(dtype=float)


def depth_profile(group: Group, metric: str, step: int) -> np.ndarray | None:
    """(runs, layers) values of ``metric`` at ``step``, one row per run that logged it.

    Every run counts whatever its final status: the profile before a divergence is exactly
    what explains it. Runs logging different layer counts are cut to the shortest.
    """
    profiles = []
    for run in group.runs:
        d = run.diagnostics
        if d is None:
            continue
        rows = d[(d["metric"] == metric) & (d["step"] == step)]
        if len(rows):
            profiles.append(_layer_profile(rows))
    if not profiles:
        return None
    depth = min(len(p) for p in profiles)
    return np.vstack([p[:depth] for p in profiles])


def diagnostic_steps(groups: list[Group]) -> list[int]:
    """Every step at which some run logged diagnostics."""
    steps = {
        int(s)
        for g in groups
        for r in g.runs
        if r.diagnostics is not None
        for s in r.diagnostics["step"].unique()
    }
    return sorted(steps)


def plot_diagnostics(groups: list[Group], steps: list[int], out: Path) -> list[Figure]:
    """Per diagnostic metric, its mean ± std over runs against depth, one panel per step."""
    logged = diagnostic_steps(groups)
    missing = [s for s in steps if s not in logged]
    if missing:
        raise ReportError(f"no diagnostics at step {missing[0]}; logged steps: {logged}")
    frames = [r.diagnostics for g in groups for r in g.runs if r.diagnostics is not None]
    metrics = list(pd.unique(pd.concat(frames)["metric"]))
    figures = []
    for metric in metrics:
        style.apply()
        fig, axes = plt.subplots(
            1, len(steps), figsize=(style.COLUMN_WIDTH, _HEIGHT), sharey=True, squeeze=False
        )
        positive = True
        for ax, step in zip(axes[0], steps, strict=True):
            for g in groups:
                stack = depth_profile(g, metric, step)
                if stack is None:
                    continue
                mean = np.nanmean(stack, axis=0)
                layers = np.arange(1, stack.shape[1] + 1)
                ax.plot(
                    layers,
                    mean,
                    color=g.color,
                    linestyle=g.linestyle,
                    marker=".",
                    ms=3,
                    label=g.label,
                )
                if len(stack) > 1:
                    std = np.nanstd(stack, axis=0, ddof=1)
                    ax.fill_between(layers, mean - std, mean + std, color=g.color, alpha=0.2, lw=0)
                positive &= bool(np.all(stack[np.isfinite(stack)] > 0))
            ax.set_title(f"step {step}")
            ax.set_xlabel("layer (forward order)")
        if positive and _wide_range(axes[0]):
            axes[0][0].set_yscale("log")
        axes[0][0].set_ylabel(_DIAG_NAMES.get(metric, metric.replace("_", " ")))
        handles, labels = axes[0][0].get_legend_handles_labels()
        _legend_below(fig, handles, labels)
        stem = out / f"diag_{metric}"
        style.save(fig, str(stem))
        figures.append(
            Figure(
                stem,
                f"{_DIAG_NAMES.get(metric, metric)} per layer at steps "
                f"{', '.join(map(str, steps))} (mean ± std over runs with diagnostics)",
            )
        )
    return figures


def _legend_below(owner: plt.Axes | plt.Figure, handles: list, labels: list) -> None:
    """Under the plot, two columns: never on top of a curve, readable at column width."""
    anchor = (0.5, -0.22) if isinstance(owner, plt.Axes) else (0.5, -0.02)
    owner.legend(handles, labels, loc="upper center", bbox_to_anchor=anchor, ncol=2, frameon=False)


def _wide_range(axes: np.ndarray) -> bool:
    """More than two decades between the smallest and largest plotted value."""
    values = np.concatenate(
        [np.asarray(line.get_ydata(), float) for ax in axes for line in ax.get_lines()]
    )
    values = values[np.isfinite(values) & (values > 0)]
    return len(values) > 0 and values.max() / values.min() > 100

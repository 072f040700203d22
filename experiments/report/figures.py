"""Paper-style figures: curves with a ±1 std band over seeds, and per-layer diagnostics.

Every figure of a report draws a group with the same colour and line style (set once by
``groups.group_runs``). Bands and means use completed runs only; every other run is drawn
on its own as a thin line: a diverged run ends in an ``x`` at its last logged step (at the
top edge when its last value is NaN or inf), a failed, interrupted or still-running run
ends in its status written out. When the completed runs fix the y range, a diverged curve
that shoots off the axes is cut there and its ``x`` sits on the edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D

from experiments.report import style
from experiments.report.factors import Factor
from experiments.report.groups import Group
from experiments.report.runs import ReportError, Run
from experiments.rundir import CPU_S, EPOCH, LAYER, MEASURE, STEP, TIME_S, VALUE

#: the --x choices and the column each one reads.
X_AXES = {"step": STEP, "time": TIME_S, "cpu": CPU_S, "epoch": EPOCH}
_X_LABELS = {
    STEP: "step",
    TIME_S: "training wall time (s)",
    CPU_S: "training CPU time (s)",
    EPOCH: "epoch",
}
DIAG_NAMES = {
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
    columns = list(dict.fromkeys([STEP, x, y]))
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
    by_step = stacked.groupby(STEP)
    out = by_step[y].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    out[x] = out.index if x == STEP else by_step[x].mean()
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


@dataclass
class _Drawn:
    """What one axes got: a legend handle per group, final means, the y values that set the
    range, and the unfinished runs still to draw once the range is known."""

    handles: dict[str, Line2D]
    finals: dict[str, float]
    core: list[np.ndarray]
    loose: list[tuple[Group, Run, pd.DataFrame, pd.DataFrame]]
    solid: bool = False

    def linestyle(self, group: Group) -> Any:
        return "-" if self.solid else group.linestyle


def _draw_means(
    ax: Axes,
    groups: list[Group],
    frame_of: Callable[[Run], pd.DataFrame],
    x: str,
    y: str,
    scale: float,
    smooth: int,
    solid: bool,
) -> _Drawn:
    """Mean ± std of every group's completed runs; a one-point curve is drawn as a point.
    ``solid``: every line solid (in a panel of small multiples the panel is the variant)."""
    drawn = _Drawn({}, {}, [], [], solid)
    for g in groups:
        done = [c for c in (_run_curve(frame_of(r), x, y, smooth) for r in g.completed) if len(c)]
        if done:
            agg = aggregate(done, x, y)
            mean, std = agg["mean"].to_numpy() * scale, agg["std"].fillna(0).to_numpy() * scale
            marker = "o" if len(agg) == 1 else None
            (line,) = ax.plot(
                agg[x], mean, color=g.color, linestyle=drawn.linestyle(g), marker=marker, ms=3
            )
            if len(agg) == 1:
                ax.errorbar(agg[x], mean, yerr=std, color=g.color, capsize=2, lw=0.8)
            else:
                ax.fill_between(agg[x], mean - std, mean + std, color=g.color, alpha=0.2, lw=0)
            drawn.core += [mean - std, mean + std]
            drawn.finals[g.label], drawn.handles[g.label] = float(mean[-1]), line
        for run in g.runs:
            if run.status != "completed":
                logged = frame_of(run)[[x, y]].dropna(subset=[x])
                if len(logged):
                    drawn.loose.append((g, run, _run_curve(frame_of(run), x, y, smooth), logged))
    return drawn


def _draw_loose(
    ax: Axes, drawn: _Drawn, x: str, y: str, scale: float, limits: tuple[float, float] | None
) -> None:
    """Every unfinished or diverged run on its own: thin line, then its end mark. A run that
    diverged at its first logged row (no finite point) still gets its x, on the top edge."""
    for g, run, curve, logged in drawn.loose:
        xs, ys = list(curve[x]), list(curve[y] * scale)
        if run.status == "diverged" and not np.isfinite(float(logged[y].iloc[-1])):
            # the loss blew up (NaN/inf) after the last finite point: go to where it ended
            xs.append(float(logged[x].iloc[-1]))
            ys.append(limits[1] if limits else (ys[-1] if ys else 0.0))
        if not xs:
            continue
        end_x, end_y = xs[-1], ys[-1]
        if limits:
            end_y = min(max(end_y, limits[0]), limits[1])
        marker = "." if len(xs) == 1 else None
        (line,) = ax.plot(
            xs, ys, color=g.color, linestyle=drawn.linestyle(g), lw=0.7, alpha=0.8, marker=marker
        )
        drawn.handles.setdefault(g.label, line)
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


@style.styled
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
    panels: Factor | None = None,
) -> MplFigure:
    """y against x for every group: one panel, legend ordered by final mean (best first); or,
    with ``panels``, one panel per level of that factor sharing both axes and one legend.

    Returned unsaved (``style.save`` writes it) so that callers can inspect what was drawn.
    """
    levels = list(panels.levels) if panels else [None]
    ncols = len(levels) if len(levels) <= 5 else 4
    nrows = -(-len(levels) // ncols)
    size = (style.COLUMN_WIDTH, _HEIGHT) if not panels else (7.0, 1.8 * nrows + 0.4)
    fig, axes = style.subplots(nrows, ncols, figsize=size, sharex=True, sharey=True, squeeze=False)
    flat = list(axes.flat)
    drawn = []
    for ax, level in zip(flat, levels, strict=False):
        mine = [g for g in groups if panels is None or panels.level_of(g) == level]
        drawn.append(_draw_means(ax, mine, frame_of, x, y, scale, smooth, panels is not None))
        if panels:
            ax.set_title(f"{panels.name} = {panels.text(level)}")
    # one group's blow-up (a loss of 1e10) would flatten every other curve; a std band that
    # dips below zero is clipped on the log axis
    if style.spans_decades(np.concatenate([c for d in drawn for c in d.core] or [np.ones(1)])):
        logy = True
    limits = _limits([c for d in drawn for c in d.core], logy)
    for ax, d in zip(flat, drawn, strict=False):
        _draw_loose(ax, d, x, y, scale, limits)
    for ax in flat[len(levels) :]:
        ax.set_visible(False)
    for ax in flat[len(levels) - ncols : len(levels)]:
        # the lowest panel of each column carries the x axis, above an empty cell too
        ax.tick_params(axis="x", labelbottom=True)
        ax.set_xlabel(_X_LABELS.get(x, x))
    if limits:
        flat[0].set_ylim(*limits)
    if logy:
        flat[0].set_yscale("log")
        for ax in flat:  # "2", "0.6", not "2x10^0"
            for axis_labels in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis_labels(PlainLogFormatter(labelOnlyBase=False))
    for row in axes:
        row[0].set_ylabel(ylabel)
    handles = {k: v for d in drawn for k, v in d.handles.items()}
    finals = {k: v for d in drawn for k, v in d.finals.items()}
    diverged = any(r.status == "diverged" for d in drawn for _, r, _, _ in d.loose)
    by_label = {g.label: g for g in groups}
    if panels:
        entries = _panel_legend(groups, panels, handles)
    else:
        order = sorted(handles, key=lambda lbl: (lbl not in finals, finals.get(lbl, 0.0), lbl))
        entries = [(handles[lbl], _legend_label(by_label[lbl])) for lbl in order]
    if diverged:
        entries.append((Line2D([], [], color="black", marker="x", ls="none", mew=1.5), "diverged"))
    if entries:
        _legend_below(fig if panels else flat[0], *zip(*entries, strict=True))
    else:
        flat[0].text(0.5, 0.5, "nothing logged yet", ha="center", transform=flat[0].transAxes)
    return fig


def _panel_legend(
    groups: list[Group], panels: Factor, handles: dict[str, Line2D]
) -> list[tuple[Line2D, str]]:
    """One entry per group label with the panel's level taken out (what tells lines apart
    within a panel), styled as the group's line."""
    entries: dict[str, Line2D] = {}
    for g in groups:
        level = panels.text(panels.level_of(g))
        if panels.key == "activation.name":
            rest = g.label.split()[1:]
        else:
            rest = [t for t in g.label.split() if t != f"{panels.name}={level}"]
        name = " ".join(rest) or g.label
        if g.label in handles and name not in entries:
            entries[name] = Line2D([], [], color=g.color)
    return [(h, name) for name, h in entries.items()]


def _layer_profile(frame: pd.DataFrame) -> np.ndarray:
    """Values per layer in forward order (numeric layer ids sorted, names as logged)."""
    numeric = pd.api.types.is_numeric_dtype(frame[LAYER])
    return frame.groupby(LAYER, sort=numeric)[VALUE].mean().to_numpy(dtype=float)


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
        rows = d[(d[MEASURE] == metric) & (d[STEP] == step)]
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
        for s in r.diagnostics[STEP].unique()
    }
    return sorted(steps)


@style.styled
def plot_diagnostics(
    groups: list[Group], steps: list[int], out: Path, panels: Factor | None = None
) -> list[Figure]:
    """Per diagnostic metric, its mean ± std over runs against depth: one panel per step, or
    with ``panels`` a row per step and a column per level of that factor."""
    logged = diagnostic_steps(groups)
    missing = [s for s in steps if s not in logged]
    if missing:
        raise ReportError(f"no diagnostics at step {missing[0]}; logged steps: {logged}")
    frames = [r.diagnostics for g in groups for r in g.runs if r.diagnostics is not None]
    metrics = list(pd.unique(pd.concat(frames)[MEASURE]))
    levels = list(panels.levels) if panels else [None]
    figures = []
    for metric in metrics:
        size = (style.COLUMN_WIDTH, _HEIGHT) if not panels else (7.0, 0.6 + 1.6 * len(steps))
        nrows, ncols = (len(steps), len(levels)) if panels else (1, len(steps))
        fig, axes = style.subplots(
            nrows,
            ncols,
            figsize=size,
            sharey=True,
            sharex="col",
            squeeze=False,
            layout="constrained" if panels else None,
        )
        positive = True
        for i, step in enumerate(steps):
            for j, level in enumerate(levels):
                ax = axes[i][j] if panels else axes[0][i]
                mine = [g for g in groups if panels is None or panels.level_of(g) == level]
                positive &= _draw_profiles(ax, mine, metric, step, solid=panels is not None)
                title = f"step {step}"
                ax.set_title(f"{panels.name} = {panels.text(level)}, {title}" if panels else title)
                if ax in axes[-1]:
                    ax.set_xlabel("layer (forward order)")
        if positive and _wide_range(axes.flat):
            axes[0][0].set_yscale("log")
        for row in axes:
            row[0].set_ylabel(DIAG_NAMES.get(metric, metric.replace("_", " ")))
        handles, labels = axes[0][0].get_legend_handles_labels()
        if panels:
            handles, labels = [], []
            for ax in axes[0]:
                for h, lbl in zip(*ax.get_legend_handles_labels(), strict=True):
                    name = lbl.split()[0]
                    if name not in labels:
                        handles.append(h)
                        labels.append(name)
        _legend_below(fig, handles, labels)
        stem = out / f"diag_{metric}"
        style.save(fig, str(stem))
        figures.append(
            Figure(
                stem,
                f"{DIAG_NAMES.get(metric, metric)} per layer at steps "
                f"{', '.join(map(str, steps))} (mean ± std over runs with diagnostics)",
            )
        )
    return figures


def _draw_profiles(ax: Axes, groups: list[Group], metric: str, step: int, *, solid: bool) -> bool:
    """Each group's mean ± std profile over depth; True when every value drawn is positive.
    ``solid``: every line solid (in a panel of small multiples the panel is the variant)."""
    positive = True
    for g in groups:
        stack = depth_profile(g, metric, step)
        if stack is None:
            continue
        mean = np.nanmean(stack, axis=0)
        layers = np.arange(1, stack.shape[1] + 1)
        style_ = "-" if solid else g.linestyle
        ax.plot(layers, mean, color=g.color, linestyle=style_, marker=".", ms=3, label=g.label)
        if len(stack) > 1:
            std = np.nanstd(stack, axis=0, ddof=1)
            ax.fill_between(layers, mean - std, mean + std, color=g.color, alpha=0.2, lw=0)
        positive &= bool(np.all(stack[np.isfinite(stack)] > 0))
    return positive


def _legend_below(owner: Axes | MplFigure, handles: list, labels: list) -> None:
    """Never on top of a curve: under a single plot in two columns (readable at column
    width), above a figure of panels in one row."""
    if isinstance(owner, Axes):
        owner.legend(
            handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False
        )
        return
    # a figure of panels: one row above them, clear of every axis label
    owner.legend(
        handles,
        labels,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=min(len(labels), 6),
        frameon=False,
    )


def _wide_range(axes: Iterable[Axes]) -> bool:
    """More than two decades between the smallest and largest plotted value."""
    values = np.concatenate(
        [np.asarray(line.get_ydata(), float) for ax in axes for line in ax.get_lines()]
    )
    values = values[np.isfinite(values) & (values > 0)]
    return len(values) > 0 and values.max() / values.min() > 100

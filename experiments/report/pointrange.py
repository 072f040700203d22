"""Point-range plot: each group's final value as mean and 95% CI, every seed as a dot, and the
published value as its own marker, as Xu et al. and Li et al. show test error per unit.

The CI is Student's t over the completed seeds (none for a single seed); runs that diverged
or did not finish have no final value and are counted in the group's tick label instead. With
two seeds t's 97.5% point is 12.7, so an interval can run far past what the stat can be (a
negative loss, an error of 300%): the axis spans the values drawn (seeds, means, published
values), not the intervals, and a whisker cut by the axis ends in an arrowhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from scipy import stats as scipy_stats

from experiments.report import formatting, style
from experiments.report.groups import Group
from experiments.report.stats import run_stats
from experiments.report.tables import Comparison

#: the stats drawn, with their axis label (the eval ones in the task's unit).
_LABELS = {"final_train_loss": "final training loss (nats)", "final_test": "final test"}


def interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a t-interval; low = high = mean for fewer than two values."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean, mean
    half = float(scipy_stats.sem(values) * scipy_stats.t.ppf((1 + confidence) / 2, len(values) - 1))
    return mean, mean - half, mean + half


def _tick(group: Group) -> str:
    counts = group.status_counts
    others = [f"{counts[s]} {s}" for s in sorted(counts) if s != "completed"]
    return group.label + (f" ({', '.join(others)})" if others else "")


@style.styled
def plot_pointrange(
    groups: list[Group],
    stats_shown: Sequence[str],
    eval_metric: str | None,
    comparisons: list[Comparison],
    out: Path,
) -> Path:
    """One panel per stat, groups as rows sorted by the first stat's mean (best at the top)."""
    values = {
        stat: {g.label: np.array([run_stats(r)[stat] for r in g.completed]) for g in groups}
        for stat in stats_shown
    }
    values = {s: {k: v[np.isfinite(v)] for k, v in per.items()} for s, per in values.items()}
    first = values[stats_shown[0]]

    def rank(g: Group) -> tuple[bool, float]:
        mine = first[g.label]
        return (not len(mine), float(np.mean(mine)) if len(mine) else 0.0)

    order = sorted(groups, key=rank)
    height = 0.55 + 0.2 * len(groups)
    width = style.COLUMN_WIDTH * (1.6 if len(stats_shown) > 1 else 1.2)
    fig, axes = style.subplots(
        1, len(stats_shown), figsize=(width, height), sharey=True, squeeze=False
    )
    rows = np.arange(len(order))[::-1]
    published_drawn = False
    for ax, stat in zip(axes[0], stats_shown, strict=True):
        scale = formatting.factor(stat, eval_metric)
        whiskers: list[tuple[float, float, float, Any]] = []
        for row, g in zip(rows, order, strict=True):
            seeds = values[stat][g.label] * scale
            if not len(seeds):
                continue
            jitter = np.linspace(-0.18, 0.18, len(seeds)) if len(seeds) > 1 else np.zeros(1)
            ax.plot(seeds, row + jitter, ".", color=g.color, ms=3, alpha=0.6, zorder=2)
            mean, low, high = interval(seeds)
            whiskers.append((row, low, high, g.color))
            ax.plot([mean], [row], "o", color=g.color, ms=4.5, mec="black", mew=0.5, zorder=4)
            for c in comparisons:
                if c.group is g and c.published.stat == stat:
                    value = float(c.published.value) * scale
                    ax.plot([value], [row], "D", mfc="none", mec="black", ms=5, mew=1, zorder=5)
                    published_drawn = True
        unit = formatting.unit(stat, eval_metric) if stat == "final_test" else ""
        label = _LABELS[stat] + (f" {unit}" if unit else "")
        shown = np.concatenate([v for v in values[stat].values() if len(v)] or [np.ones(1)])
        if (shown > 0).all() and style.spans_decades(shown):
            # a run that blew up without diverging (loss 1e5) would squash every other group
            ax.set_xscale("log", nonpositive="clip")
            label += " (log scale)"
        ax.set_xlabel(label)
        ax.grid(axis="y", visible=False)
        _draw_whiskers(ax, whiskers)
    axes[0][0].set_yticks(rows, [_tick(g) for g in order])
    axes[0][0].set_ylim(-0.7, len(order) - 0.3)
    entries = [
        (Line2D([], [], color="gray", marker="o", mec="black", mew=0.5, lw=1.6), "mean, 95% CI"),
        (Line2D([], [], color="gray", marker=".", ls="none"), "one seed"),
    ]
    if published_drawn:
        entries.append(
            (Line2D([], [], marker="D", mfc="none", mec="black", ls="none"), "published")
        )
    fig.subplots_adjust(top=1 - 0.3 / height)
    fig.legend(
        *zip(*entries, strict=True),
        loc="lower center",
        bbox_to_anchor=(0.5, 1 - 0.25 / height),
        ncol=len(entries),
        frameon=False,
    )
    stem = out / "final_pointrange"
    style.save(fig, str(stem))
    return stem


def _draw_whiskers(ax: Any, whiskers: list[tuple[float, float, float, Any]]) -> None:
    """Fix the x-range to the values already drawn (seeds, means, published; padded), then
    draw each CI cut to it, with an arrowhead where the axis cuts it."""
    if not whiskers:  # no group has a final value: nothing drawn to fit
        return
    ax.autoscale_view()
    lo, hi = ax.get_xlim()  # the values' range with matplotlib's margins (log-aware)
    ax.set_xlim(lo, hi)
    for row, low, high, color in whiskers:
        ends = max(low, lo), min(high, hi)
        ax.plot(ends, [row, row], color=color, lw=1.6, zorder=3)
        for end, cut, marker in ((ends[0], low < lo, "<"), (ends[1], high > hi, ">")):
            if cut:
                ax.plot([end], [row], marker, color=color, ms=4, zorder=3, clip_on=False)

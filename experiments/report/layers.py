"""Per-layer diagnostics as layer x step heatmaps, one panel per group: where in depth and when
in training units die, outputs go to zero, or the gradient vanishes.

A panel is the mean over the group's runs with diagnostics (every status: the layers of a run
before it diverged are what explain it). The colour scale is shared by every panel of a
figure; gradient norms, spanning many decades in deep saturating nets, use a log scale.
Groups of a two-factor sweep are laid out as its grid (rows x columns), others in rows of four.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm, Normalize

from experiments.report import style
from experiments.report.factors import Factor
from experiments.report.figures import DIAG_NAMES, Figure, depth_profile, diagnostic_steps
from experiments.report.groups import Group
from experiments.rundir import MEASURE

#: the diagnostics drawn as heatmaps (others stay profiles only).
HEATMAP_METRICS = ("zero_fraction", "dead_units", "dead_fraction", "grad_norm")


def layer_steps(group: Group, metric: str, steps: list[int]) -> np.ndarray | None:
    """(layers, steps) mean over the group's runs; NaN where a step was not logged."""
    columns = [depth_profile(group, metric, s) for s in steps]
    depth = max((c.shape[1] for c in columns if c is not None), default=0)
    if not depth:
        return None
    out = np.full((depth, len(steps)), np.nan)
    for j, stack in enumerate(columns):
        if stack is not None:
            out[: stack.shape[1], j] = np.nanmean(stack, axis=0)
    return out


def _layout(groups: list[Group], grid: tuple[Factor, Factor] | None) -> list[list[Group | None]]:
    if grid:
        rows, cols = grid
        cells = {(rows.level_of(g), cols.level_of(g)): g for g in groups}
        return [[cells.get((r, c)) for c in cols.levels] for r in rows.levels]
    ncols = min(4, len(groups))
    return [
        [*groups[i : i + ncols], *[None] * (ncols - len(groups[i : i + ncols]))]
        for i in range(0, len(groups), ncols)
    ]


@style.styled
def plot_layer_heatmaps(
    groups: list[Group], grid: tuple[Factor, Factor] | None, out: Path
) -> list[Figure]:
    steps = diagnostic_steps(groups)
    frames = [r.diagnostics for g in groups for r in g.runs if r.diagnostics is not None]
    logged = {m for f in frames for m in f[MEASURE].unique()}
    made = []
    for metric in (m for m in HEATMAP_METRICS if m in logged):
        maps = {g.label: layer_steps(g, metric, steps) for g in groups}
        finite = np.concatenate([m[np.isfinite(m)] for m in maps.values() if m is not None])
        if not len(finite):
            continue
        positive = finite[finite > 0]
        if metric == "grad_norm" and len(positive) and positive.max() / positive.min() > 100:
            norm: Normalize = LogNorm(positive.min(), positive.max())
        else:
            norm = Normalize(float(finite.min()), float(finite.max()) or 1.0)
        layout = _layout(groups, grid)
        nrows, ncols = len(layout), len(layout[0])
        fig, axes = style.subplots(
            nrows,
            ncols,
            figsize=(7.0, 0.5 + 1.35 * nrows),
            squeeze=False,
            sharex=True,
            layout="constrained",
        )
        image = None
        for i, row in enumerate(layout):
            for j, g in enumerate(row):
                ax = axes[i][j]
                ax.grid(False)
                values = maps.get(g.label) if g else None
                if values is None:
                    ax.set_visible(g is not None)
                    if g is not None:
                        ax.text(0.5, 0.5, "no diagnostics", ha="center", transform=ax.transAxes)
                    continue
                image = ax.imshow(
                    np.ma.masked_invalid(values),
                    aspect="auto",
                    origin="lower",
                    norm=norm,
                    cmap="viridis",
                    interpolation="nearest",
                    extent=(-0.5, len(steps) - 0.5, 0.5, values.shape[0] + 0.5),
                )
                ax.set_title(g.label, fontsize=6.5)
                ax.set_xticks(range(len(steps)), [str(s) for s in steps], fontsize=5.5)
                ax.tick_params(axis="y", labelsize=5.5)
                if j == 0:
                    ax.set_ylabel("layer", fontsize=6.5)
                if i == nrows - 1:
                    ax.set_xlabel("step", fontsize=6.5)
        if image is not None:
            bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.01, aspect=40)
            bar.set_label(DIAG_NAMES.get(metric, metric), fontsize=6.5)
        stem = out / f"layers_{metric}"
        style.save(fig, str(stem))
        made.append(
            Figure(
                stem,
                f"{DIAG_NAMES.get(metric, metric)} per layer (1 = input side) and step, mean over "
                "each group's runs; one panel per group, colour scale shared",
            )
        )
    return made

"""One look for every figure: an activation keeps its colour in every plot of the project.

Figures are matplotlib ``Figure`` objects made without pyplot, so the report needs no GUI
backend and never chooses one: importing or running it leaves the caller's backend (a
notebook's inline one, say) and its rcParams as they were. The look is applied only inside the
drawing functions (``styled``), and ``save`` passes its resolution explicitly.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.figure import Figure

#: fixed colours for the units the studies compare; others get a stable hashed colour.
ACTIVATION_COLORS: dict[str, str] = {
    "identity": "#7f7f7f",
    "sigmoid": "#8c564b",
    "tanh": "#e377c2",
    "relu": "#1f77b4",
    "lrelu": "#17becf",
    "prelu": "#ff7f0e",
    "rrelu": "#2ca02c",
    "elu": "#d62728",
    "mpelu": "#9467bd",
    "tlu": "#bcbd22",
    "brelu": "#393b79",
    "relu6": "#5254a3",
    "maxout": "#637939",
    "crelu": "#8c6d31",
    "selu": "#843c39",
    "gelu": "#7b4173",
    "silu": "#3182bd",
    "mish": "#e6550d",
    "softplus": "#31a354",
    "hard_tanh": "#ad494a",
    "noisy_hard_tanh": "#e7969c",
    "hard_sigmoid": "#bd9e39",
    "noisy_hard_sigmoid": "#e7ba52",
    "noisy_relu": "#6baed6",
}
_FALLBACK = matplotlib.colormaps["tab20"].colors

#: single-column paper width in inches (about 8.5 cm).
COLUMN_WIDTH = 3.4


def color_for(name: str) -> str | tuple[float, float, float]:
    """Colour of an activation (or any group label starting with an activation name)."""
    key = str(name).lower()
    if key in ACTIVATION_COLORS:
        return ACTIVATION_COLORS[key]
    for act in sorted(ACTIVATION_COLORS, key=len, reverse=True):
        if key.startswith(act):
            return ACTIVATION_COLORS[act]
    return _FALLBACK[zlib.crc32(key.encode()) % len(_FALLBACK)]


#: fonts and sizes readable at single-column width.
LOOK: dict[str, Any] = {
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

P = ParamSpec("P")
R = TypeVar("R")


def styled(draw: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``draw`` makes its figures under LOOK, restoring the rcParams afterwards."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(LOOK):
            return draw(*args, **kwargs)

    return wrapper


def subplots(
    *args: Any, figsize: tuple[float, float], layout: str | None = None, **kwargs: Any
) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a figure of no backend, and its axes."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


def save(fig: Figure, stem: str) -> list[str]:
    """Write ``stem``.png and ``stem``.pdf; returns the paths."""
    paths = [f"{stem}.png", f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=LOOK["savefig.dpi"], bbox_inches=LOOK["savefig.bbox"])
    return paths


#: a panel whose largest value exceeds its smallest by more than this gets a log axis (a run that
#: blew up without diverging, loss 1e5-1e10, would otherwise squash every other group).
WIDE_SPAN = 1000


def spans_decades(values: np.ndarray) -> bool:
    """Whether the positive finite ``values`` span more than WIDE_SPAN (then: a log axis)."""
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(len(positive)) and positive.max() > WIDE_SPAN * positive.min()

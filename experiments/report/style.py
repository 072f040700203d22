"""One look for every figure: an activation keeps its colour in every plot of the project."""

from __future__ import annotations

import zlib

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

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
_FALLBACK = plt.get_cmap("tab20").colors

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


def apply() -> None:
    """Fonts and sizes readable at single-column width."""
    plt.rcParams.update(
        {
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
    )


def save(fig: plt.Figure, stem: str) -> list[str]:
    """Write ``stem``.png and ``stem``.pdf; returns the paths."""
    paths = [f"{stem}.png", f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths


#: a panel whose largest value exceeds its smallest by more than this gets a log axis (a run that
#: blew up without diverging, loss 1e5-1e10, would otherwise squash every other group).
WIDE_SPAN = 1000


def spans_decades(values: np.ndarray) -> bool:
    """Whether the positive finite ``values`` span more than WIDE_SPAN (then: a log axis)."""
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(len(positive)) and positive.max() > WIDE_SPAN * positive.min()

"""Draw f(x) and f'(x) (by autograd) of chosen activations on one figure, PNG and PDF.

    python scripts/plot_activations.py                                 # the studies' units
    python scripts/plot_activations.py --units relu lrelu:slope=0.1818 mpelu:alpha=1 --out f

A unit is ``NAME`` or ``NAME:key=value,...`` with the unit's own parameters. Units are drawn
at those parameters in evaluation mode; for units that draw random numbers while training (rrelu,
the noisy family) the band holding 95% of the training-mode draws of f(x) and f'(x) is shaded.
Colours come from ``experiments.report.style`` so a unit looks the same in every figure of the
project.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

import activations
from experiments.report import style

DEFAULT_UNITS = [
    "relu",
    "lrelu",
    "prelu",
    "rrelu",
    "elu",
    "mpelu",
    "tlu",
    "tanh",
    "sigmoid",
    "noisy_hard_tanh",
    "noisy_hard_sigmoid",
]
#: training-mode draws per x for the band of a random unit, and the share of them it holds.
BAND_DRAWS = 512
BAND_COVERAGE = 0.95
DEFAULT_OUT = "results/figures/activations"


def parse_unit(spec: str) -> tuple[str, dict[str, object]]:
    """``"lrelu:slope=0.1"`` -> ("lrelu", {"slope": 0.1}); values are read as YAML scalars."""
    name, _, rest = spec.partition(":")
    params: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"unit spec {spec!r}: {item!r} is not key=value")
        params[key.strip()] = yaml.safe_load(value)
    return name.strip(), params


def is_elementwise(name: str) -> bool:
    """Whether a unit maps each entry to one entry (crelu and maxout do not: no f(x) curve)."""
    return activations.build(name, num_channels=2).out_channels(2) == 2


def curves(unit: activations.Activation, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f'(x) of an elementwise unit, the derivative by autograd."""
    xg = x.clone().requires_grad_()
    y = unit(xg.view(-1, 1)).view(-1)
    y.sum().backward()
    return y.detach(), xg.grad


def training_band(
    unit: activations.Activation, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Quantile bands (f low, f high, f' low, f' high) of a random unit's training-mode draws at
    each x, or None for a unit that draws nothing while training. Seeded: the figure is stable."""
    if not unit.train().draws_random:
        unit.eval()
        return None
    unit.generator = torch.Generator().manual_seed(0)
    f, d = curves(unit, x.repeat(BAND_DRAWS))
    unit.eval()
    tails = torch.tensor([(1 - BAND_COVERAGE) / 2, (1 + BAND_COVERAGE) / 2], dtype=x.dtype)
    f_q = torch.quantile(f.view(BAND_DRAWS, -1), tails, dim=0)
    d_q = torch.quantile(d.view(BAND_DRAWS, -1), tails, dim=0)
    return f_q[0], f_q[1], d_q[0], d_q[1]


@style.styled
def plot(specs: list[str], out: str, xmin: float, xmax: float) -> list[str]:
    fig, (ax_f, ax_d) = style.subplots(1, 2, figsize=(2 * style.COLUMN_WIDTH, 2.4))
    x = torch.linspace(xmin, xmax, 1201, dtype=torch.float64)
    seen: dict[str, int] = {}
    for spec in specs:
        name, params = parse_unit(spec)
        unit = activations.build(name, num_channels=1, **params).double().eval()
        f, d = curves(unit, x)
        color = style.color_for(name)
        dashes = ("-", "--", ":", "-.")[seen.get(name, 0) % 4]
        seen[name] = seen.get(name, 0) + 1
        label = name + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
        band = training_band(unit, x)
        if band is not None:
            label += " (eval; band: training)"
            ax_f.fill_between(x, band[0], band[1], color=color, alpha=0.15, lw=0)
            ax_d.fill_between(x, band[2], band[3], color=color, alpha=0.15, lw=0)
        ax_f.plot(x, f, dashes, color=color, label=label)
        ax_d.plot(x, d, dashes, color=color, label=label)
    ax_f.set(xlabel="x", ylabel="f(x)", title="activation")
    ax_d.set(xlabel="x", ylabel="f'(x)", title="derivative (autograd)")
    for ax in (ax_f, ax_d):
        ax.axhline(0, color="0.6", lw=0.5)
        ax.axvline(0, color="0.6", lw=0.5)
    ax_d.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return style.save(fig, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--units", nargs="+", default=DEFAULT_UNITS, metavar="NAME[:k=v,...]")
    parser.add_argument("--out", default=DEFAULT_OUT, help="path stem (default %(default)s)")
    parser.add_argument("--xmin", type=float, default=-4.0)
    parser.add_argument("--xmax", type=float, default=3.0)
    args = parser.parse_args(argv)
    if not args.xmin < args.xmax:
        parser.error(f"--xmin {args.xmin} must be below --xmax {args.xmax}")
    plottable = [n for n in activations.names() if is_elementwise(n)]
    for spec in args.units:
        name = parse_unit(spec)[0]
        if name not in plottable:
            parser.error(f"cannot plot {name!r} as f(x); elementwise units: {', '.join(plottable)}")
    with activations.use_backend("reference"):  # the definitions; no compile for a figure
        for path in plot(args.units, args.out, args.xmin, args.xmax):
            print(path)


if __name__ == "__main__":
    main()

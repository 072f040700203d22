"""Draw f(x) and f'(x) (by autograd) of chosen activations on one figure, PNG and PDF.

    python scripts/plot_activations.py                                 # the studies' units
    python scripts/plot_activations.py --units relu lrelu:slope=0.1818 mpelu:alpha=1 --out f

A unit is ``NAME`` or ``NAME:key=value,...`` with the unit's own parameters. Units are drawn
at those parameters in evaluation mode; for rrelu the band its training slopes span
(1/upper .. 1/lower) is shaded. Colours come from ``experiments.report.style`` so a unit looks
the same in every figure of the project.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import yaml

import activations
from activations.rectifiers import RReLU
from experiments.report import style

DEFAULT_UNITS = ["relu", "lrelu", "prelu", "rrelu", "elu", "mpelu", "tlu", "tanh", "sigmoid"]
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


def plot(specs: list[str], out: str, xmin: float, xmax: float) -> list[str]:
    style.apply()
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(2 * style.COLUMN_WIDTH, 2.4))
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
        if isinstance(unit, RReLU):
            label += " (test; band: training)"
        ax_f.plot(x, f, dashes, color=color, label=label)
        ax_d.plot(x, d, dashes, color=color, label=label)
        if isinstance(unit, RReLU):  # the slopes its training draws span
            neg = x[x < 0]
            ax_f.fill_between(neg, neg / unit.lower, neg / unit.upper, color=color, alpha=0.15)
            ax_d.fill_between(neg, 1 / unit.upper, 1 / unit.lower, color=color, alpha=0.15)
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

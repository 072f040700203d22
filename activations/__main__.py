"""``python -m activations``: what each unit does to a standard normal input, computed now.

Columns, for every registered unit at its defaults (evaluation mode, so rrelu uses its test
slope) on x ~ N(0, 1) with 64 channels:
  E[f(x)]   mean output: the bias shift a layer passes on (0 for a zero-centred unit)
  zeros     fraction of outputs exactly 0 (sparsity)
  f'(-5)    d/dx of the mean output at input x everywhere: f'(x) for elementwise units,
  f'(+5)    ~0 where the unit saturates (crelu: +-0.5, half its outputs pass the gradient)
  params    learnable parameters for 64 channels
"""

from __future__ import annotations

import argparse

import torch

import activations

CHANNELS = 64
HEADER = ("unit", "E[f(x)]", "zeros", "f'(-5)", "f'(+5)", "params")


def slope_at(unit: activations.Activation, value: float) -> float:
    """d/dx of the mean output when every input entry equals ``value``."""
    x = torch.full((1, CHANNELS), value, dtype=torch.float64, requires_grad=True)
    unit(x).mean().backward()
    return float(x.grad.sum())


def unit_stats(name: str, x: torch.Tensor) -> tuple[float, float, float, float, int]:
    """(E[f(x)], zero fraction, f'(-5), f'(+5), learnable parameter count) of unit ``name``."""
    unit = activations.build(name, num_channels=CHANNELS).double().eval()
    with torch.no_grad():
        y = unit(x)
    params = sum(p.numel() for p in unit.parameters() if p.requires_grad)
    zeros = float((y == 0).double().mean())
    return float(y.mean()), zeros, slope_at(unit, -5.0), slope_at(unit, 5.0), params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=1 << 20, help="draws of x (%(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.samples < CHANNELS:
        parser.error(f"--samples {args.samples} must be at least {CHANNELS}")
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.samples // CHANNELS, CHANNELS, generator=gen, dtype=torch.float64)
    print(f"x ~ N(0, 1), {x.numel()} draws, {CHANNELS} channels, units at defaults, eval mode")
    print("{:<10} {:>9} {:>7} {:>9} {:>9} {:>7}".format(*HEADER))
    for name in activations.names():
        with activations.use_backend("reference"):  # the definitions; no compile for a table
            mean, zeros, neg, pos, params = unit_stats(name, x)
        print(f"{name:<10} {mean:9.4f} {zeros:7.3f} {neg:9.4f} {pos:9.4f} {params:7d}")


if __name__ == "__main__":
    main()

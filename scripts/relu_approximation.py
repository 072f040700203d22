"""Why a nonlinearity matters: sums of k ReLUs fit |x| and x^2, identity units cannot.

    python scripts/relu_approximation.py          # results/figures/relu_approximation.{png,pdf}
    python scripts/relu_approximation.py --ks 2 4 8 --out /tmp/fits

A net with one hidden layer of k units, y = sum_j v_j f(w_j x + b_j) + c, is fitted to each target
on 401 points of [-2, 2] by full-batch Adam polished with L-BFGS (best of a few seeded restarts).
With f = ReLU it is a piecewise-linear curve with up to k kinks: |x| is exact with 2 units
(relu(x) + relu(-x)) and x^2 improves as k grows (the best such interpolant's error falls like
1/k^4). With the identity the net is one affine map whatever k is, so its error stays at the
best straight line's.
Left panels: the fits per k; right panel: mean squared error against k, both units, both targets.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib
import torch
from torch import nn

import activations
from experiments.report import style

TARGETS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "|x|": torch.abs,
    "x^2": torch.square,
}
UNITS = ("relu", "identity")
DEFAULT_KS = (2, 4, 8, 16, 32)
DEFAULT_OUT = "results/figures/relu_approximation"
INTERVAL = (-2.0, 2.0)
#: L-BFGS iterations that polish Adam's fit to the nearby minimum (Adam alone stops ~1e-7 away).
POLISH_ITERS = 200
#: errors below this are drawn on it: an exact fit up to the optimiser's precision (RMS error
#: 3e-4 on targets of range 2-4), not a trend. L-BFGS stops nearer 1e-20 with 2 units than with 32.
ERROR_FLOOR = 1e-7


def make_net(k: int, unit: str, seed: int) -> nn.Sequential:
    """One hidden layer of k units, its kinks (-b/w) spread uniformly over the interval."""
    gen = torch.Generator().manual_seed(seed)
    hidden = nn.Linear(1, k)
    with torch.no_grad():
        hidden.weight.copy_(torch.where(torch.rand(k, 1, generator=gen) < 0.5, -1.0, 1.0))
        knots = torch.empty(k).uniform_(*INTERVAL, generator=gen)
        hidden.bias.copy_(-knots * hidden.weight.view(-1))
    out = nn.Linear(k, 1)
    with torch.no_grad():
        out.weight.normal_(0.0, 1.0 / k**0.5, generator=gen)
        out.bias.zero_()
    return nn.Sequential(hidden, activations.build(unit, num_channels=k), out).double()


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """Full-batch Adam into a basin, then L-BFGS to its bottom (squared error on x, y)."""
    adam = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        adam.zero_grad(set_to_none=True)
        (net(x) - y).square().mean().backward()
        adam.step()
    polish = torch.optim.LBFGS(
        net.parameters(),
        max_iter=POLISH_ITERS,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-14,
        tolerance_change=1e-18,
    )

    def closure() -> torch.Tensor:
        polish.zero_grad(set_to_none=True)
        loss = (net(x) - y).square().mean()
        loss.backward()
        return loss

    polish.step(closure)


def fit(
    target: Callable[[torch.Tensor], torch.Tensor],
    k: int,
    unit: str,
    *,
    steps: int,
    restarts: int,
    points: int = 401,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(mean squared error, x, fitted y) of the best of ``restarts`` seeded fits."""
    x = torch.linspace(*INTERVAL, points, dtype=torch.float64).view(-1, 1)
    y = target(x)
    best: tuple[float, torch.Tensor] | None = None
    for seed in range(restarts):
        net = make_net(k, unit, seed)
        train(net, x, y, steps)
        with torch.no_grad():
            pred = net(x)
            mse = float((pred - y).square().mean())
        if best is None or mse < best[0]:
            best = (mse, pred.view(-1))
    assert best is not None
    return best[0], x.view(-1), best[1]


@style.styled
def plot(ks: list[int], out: str, *, steps: int, restarts: int) -> list[str]:
    """Fit every (target, unit, k), draw the fits and the error curves; returns the file paths."""
    fig, axes = style.subplots(1, 3, figsize=(2 * style.COLUMN_WIDTH, 2.3), layout="constrained")
    shades = matplotlib.colormaps["Blues"](
        [0.35 + 0.65 * i / max(len(ks) - 1, 1) for i in range(len(ks))]
    )
    for ax, (tname, target) in zip(axes[:2], TARGETS.items(), strict=True):
        errors = {unit: [] for unit in UNITS}
        for i, k in enumerate(ks):
            for unit in UNITS:
                mse, x, pred = fit(target, k, unit, steps=steps, restarts=restarts)
                errors[unit].append(mse)
                if unit == "relu":
                    ax.plot(x, pred, color=shades[i], lw=1.0, label=f"k={k}")
                else:
                    line = pred  # the same straight line for every k
        ax.plot(x, target(x), color="black", ls=":", lw=1.0, label="target")
        ax.plot(x, line, color=style.color_for("identity"), ls="--", lw=1.0, label="identity")
        ax.set(title=f"ReLU sums fit {tname}", xlabel="x")
        marker = "o" if tname == "|x|" else "s"
        for unit in UNITS:
            axes[2].plot(
                ks,
                [max(e, ERROR_FLOOR) for e in errors[unit]],
                marker=marker,
                ms=3,
                color=style.color_for(unit),
                ls="-" if tname == "|x|" else "--",
                label=f"{unit}, {tname}",
            )
        for unit in UNITS:
            print(
                f"{tname:4} {unit:9} "
                + " ".join(f"k={k}:{e:.2e}" for k, e in zip(ks, errors[unit], strict=True))
            )
    axes[0].legend(frameon=False, fontsize=5.5)
    axes[2].set(
        xscale="log",
        yscale="log",
        xlabel="hidden units k",
        ylabel="mean squared error",
        title="error against k",
    )
    axes[2].set_xticks(ks, [str(k) for k in ks])
    axes[2].axhline(ERROR_FLOOR, color="0.6", lw=0.5)
    axes[2].annotate(
        "exact (to the optimiser's precision)",
        (ks[0], ERROR_FLOOR),
        xytext=(2, 3),
        textcoords="offset points",
        fontsize=5.5,
        color="0.4",
    )
    axes[2].minorticks_off()
    axes[2].legend(frameon=False, fontsize=5.5, loc="lower left", bbox_to_anchor=(0.0, 0.1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return style.save(fig, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ks", type=int, nargs="+", default=list(DEFAULT_KS), metavar="K")
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps per fit (%(default)s)")
    parser.add_argument("--restarts", type=int, default=3, help="seeded fits, best kept")
    parser.add_argument("--out", default=DEFAULT_OUT, help="path stem (default %(default)s)")
    args = parser.parse_args(argv)
    if min(args.ks) < 1 or args.steps < 1 or args.restarts < 1:
        parser.error(
            f"--ks, --steps and --restarts must be >= 1 (got {args.ks}, "
            f"{args.steps}, {args.restarts})"
        )
    torch.set_num_threads(1)  # 401 x 32 matrices: threads only add synchronisation
    for path in plot(sorted(set(args.ks)), args.out, steps=args.steps, restarts=args.restarts):
        print(path)


if __name__ == "__main__":
    main()

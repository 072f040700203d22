"""Rectifiers: ReLU, leaky (fixed slope), bounded (ReLU-n / ReLU6) and randomized (RReLU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from activations import fused
from activations.backend import path_for
from activations.base import Activation, Pointwise, StepFunction
from activations.registry import register


@register("relu")
class ReLU(Pointwise):
    """max(x, 0) (Nair & Hinton 2010); He init's reference unit (he_slope 0)."""

    fn = staticmethod(F.relu)


@register("lrelu")
class LeakyReLU(Activation):
    """x for x >= 0, slope * x otherwise (Maas et al. 2013).

    Xu et al. 2015 write the negative side as x / a: their "a = 100" is slope 0.01 and
    "a = 5.5" is slope 1/5.5.
    """

    def __init__(
        self, num_channels: int | None = None, channel_dim: int = 1, slope: float = 0.01
    ) -> None:
        super().__init__(num_channels, channel_dim)
        self.slope = float(slope)

    @property
    def he_slope(self) -> float:
        return self.slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.slope)

    def extra_repr(self) -> str:
        return f"slope={self.slope}, {super().extra_repr()}"


@register("brelu")
class BoundedReLU(Activation):
    """min(max(x, 0), n): ReLU-n (Krizhevsky 2010), bounded so activations cannot blow up."""

    def __init__(
        self, num_channels: int | None = None, channel_dim: int = 1, n: float = 6.0
    ) -> None:
        super().__init__(num_channels, channel_dim)
        if not float(n) > 0:
            raise ValueError(f"brelu needs a positive bound n, got n={n!r}")
        self.n = float(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, self.n)

    def extra_repr(self) -> str:
        return f"n={self.n}, {super().extra_repr()}"


@register("relu6")
class ReLU6(BoundedReLU):
    """ReLU-n with n = 6, Krizhevsky 2010's choice (torch.nn.ReLU6)."""

    def __init__(self, num_channels: int | None = None, channel_dim: int = 1) -> None:
        super().__init__(num_channels, channel_dim, n=6.0)


@register("rrelu")
class RReLU(Activation):
    """Randomized leaky ReLU as Xu et al. 2015 define it (cxxnet's "insanity" layer).

    Training: y = x for x >= 0 and y = x / a for x < 0, with a ~ U(lower, upper) drawn afresh
    for every element on every forward. Evaluation: y = x * 2 / (lower + upper) for x < 0,
    i.e. a fixed at its mean (lower + upper) / 2 (slope 1/5.5 at the defaults 3, 8).

    This is not ``torch.nn.RReLU``: that samples the *slope* uniformly in [lower, upper] and
    tests at the mean slope, a different distribution and a different test slope.

    Draws: a = lower + (upper - lower) * (k + 1/2) / 2**14 with k uniform on {0, ..., 2**14-1},
    i.e. U(lower, upper) at 14-bit resolution. Each forward takes one key (two 32-bit words) from
    ``self.generator`` when it is set, else from torch's default generator of the input's
    device; the element at memory position i then draws k from a hash of (key, i)
    (``fused.counter_cells``, lowbias32 of a Weyl sequence), computed inside the compiled
    kernel, so no draw is stored or read. For reproducible draws set a seeded generator on
    the module's device::

        unit.generator = torch.Generator().manual_seed(0)    # CPU inputs
        unit.generator = torch.Generator("cuda").manual_seed(0)  # CUDA inputs

    Every backend draws the same a from the same generator state.
    """

    fast_path = True

    def __init__(
        self,
        num_channels: int | None = None,
        channel_dim: int = 1,
        lower: float = 3.0,
        upper: float = 8.0,
    ) -> None:
        super().__init__(num_channels, channel_dim)
        if not 0 < float(lower) <= float(upper):
            raise ValueError(
                f"rrelu needs 0 < lower <= upper, got lower={lower!r}, upper={upper!r}"
            )
        self.lower = float(lower)
        self.upper = float(upper)

    @property
    def test_slope(self) -> float:
        """The evaluation-mode slope 2 / (lower + upper)."""
        return 2.0 / (self.lower + self.upper)

    @property
    def he_slope(self) -> float:
        return self.test_slope

    @property
    def draws_random(self) -> bool:
        return self.training

    def over_sequence(self, like: torch.Tensor) -> StepFunction:
        """Draws the whole sequence's slopes 1/a at once, under one key, as one call on it
        would (step t's elements take the counters of their positions in the sequence); each
        step then costs two ops, where the per-call draw cost a GRU step about 25 (250 us)."""
        if not self.training:
            return super().over_sequence(like)
        key = fused.draw_key(like, self.generator)
        slope = fused.rrelu_slopes(like, key, self.lower, self.upper)
        return lambda x, t: self(x, slope[t])

    def forward(self, x: torch.Tensor, slope: torch.Tensor | None = None) -> torch.Tensor:
        """``slope``: in training, the negative-side slopes 1/a to use instead of drawing."""
        if self.training and slope is not None:
            # max(x, x / a) is x / a below 0 and x above when a >= 1, exactly, in two ops where
            # torch.where takes 4x as long (18 against 4.3 us on a GRU step's 50x128, 2 threads)
            if self.lower >= 1:
                return torch.maximum(x, x * slope)
            return torch.where(x >= 0, x, x * slope)
        reference = path_for(x.numel(), fused.RRELU_TWIN_COST) == "reference"
        if not self.training:
            return self.reference_eval(x) if reference else F.leaky_relu(x, self.test_slope)
        key = fused.draw_key(x, self.generator)
        if reference:
            return self.reference_train(x, key)
        return fused.rrelu_train(x, key, self.lower, self.upper)

    def reference_train(self, x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Plain-autograd twin of the training forward, drawing under ``key`` as the fast path
        does (from materialised counters).

        r = relu(-x) splits x without ``torch.where`` (30x an add's time on this CPU):
        (x + r) - r / a is x for x >= 0 (slope 1 at 0, where r's gradient is 0) and x / a
        below, both exactly."""
        u = fused.uniform_cells(key, fused.memory_index(x), x.dtype)
        a = self.lower + (self.upper - self.lower) * u
        r = torch.relu(-x)
        return ((x + r) - r / a).to(x.dtype)

    def reference_eval(self, x: torch.Tensor) -> torch.Tensor:
        """Plain-autograd twin of the evaluation forward; at x = 0 its slope is the negative
        one, as ``F.leaky_relu``'s (the fast path) is."""
        return torch.where(x > 0, x, x * self.test_slope)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}, {super().extra_repr()}"

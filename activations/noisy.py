"""Hard-saturating units and their noisy versions (Gulcehre, Moczulski, Denil & Bengio, ICML 2016).

A hard-saturating unit h (hard tanh, hard sigmoid) has exactly zero gradient once saturated, so a
unit stuck there never recovers. The paper's Algorithm 1 keeps it learning by adding noise only
where h departs from its linearisation u at zero, scaled by how far it departs::

    delta = h(x) - u(x)                        # 0 in the linear region
    sigma = c * (sigmoid(p * delta) - 1/2)^2   # 0 in the linear region, grows with saturation
    d     = -sgn(x) * sgn(1 - alpha)           # pushes the noise towards the linear region
    phi   = alpha * h(x) + (1 - alpha) * u(x) + d * sigma * |xi|,   xi ~ N(0, 1)

``|xi|`` is half-normal (the paper's "noise in the right direction"); at evaluation it is replaced
by its expectation sqrt(2 / pi). ``p`` is learned, one value per channel. ReLU's gap to its
linearisation on the active side is zero, so the paper puts the noise on ReLU's input instead:
``noisy_relu(x) = relu(x + c * xi)`` with zero-mean noise, and relu(x) at evaluation.

Defaults are the authors' Theano code (caglar/noisy_units, codes/theano/nunits.py, read in the
fork afcarl/noisy_units@1946679): ``NTanhP`` alpha 1.15, c 0.5; ``NSigmoidP`` alpha 1.1, c 0.15;
``NReLU`` c 0.05. Two differences from that file, both to follow Algorithm 1 as the paper states
it: its ``NTanhP`` clips the result with a final hard tanh (not here), and its ``NSigmoidP`` uses
zero noise at test time where the paper uses the expectation (here: the expectation). The initial
value of p is not in the file (it is passed in): 1 here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from activations.base import Activation, Pointwise, StepFunction
from activations.registry import register

#: E|xi| for xi ~ N(0, 1): the half-normal noise's mean, used in place of the noise at evaluation.
HALF_NORMAL_MEAN = math.sqrt(2.0 / math.pi)


def hard_tanh(x: torch.Tensor) -> torch.Tensor:
    """max(min(x, 1), -1)."""
    return x.clamp(-1.0, 1.0)


def linear_tanh(x: torch.Tensor) -> torch.Tensor:
    """Hard tanh's (and tanh's) first-order Taylor expansion at 0: x."""
    return x


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """max(min(x/4 + 1/2, 1), 0), the paper's hard sigmoid (torch's F.hardsigmoid: x/6 + 1/2)."""
    return linear_sigmoid(x).clamp(0.0, 1.0)


def linear_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The sigmoid's first-order Taylor expansion at 0: x / 4 + 1/2."""
    return 0.25 * x + 0.5


@register("hard_tanh")
class HardTanh(Pointwise):
    """max(min(x, 1), -1): tanh's piecewise-linear twin, zero gradient beyond |x| = 1."""

    fn = staticmethod(hard_tanh)


@register("hard_sigmoid")
class HardSigmoid(Pointwise):
    """max(min(x / 4 + 1/2, 1), 0) (Gulcehre et al. 2016): zero gradient beyond |x| = 2."""

    fn = staticmethod(hard_sigmoid)


class NormalNoise(Activation):
    """A unit that adds N(0, 1) draws shaped like its input while training.

    The draws come from ``self.generator`` when set (seed it for reproducible draws), else from
    torch's default generator of the input's device. ``forward(x, xi)`` takes given draws
    instead, which is how a recurrence's steps share one draw for the whole sequence.
    """

    @property
    def draws_random(self) -> bool:
        return self.training

    def standard_normal(self, like: torch.Tensor) -> torch.Tensor:
        """N(0, 1) draws shaped like ``like``."""
        return torch.randn(
            like.shape, generator=self.generator, dtype=like.dtype, device=like.device
        )

    def over_sequence(self, like: torch.Tensor) -> StepFunction:
        """Draws the whole sequence's xi at once, as one call on it would."""
        if not self.training:
            return super().over_sequence(like)
        xi = self.standard_normal(like)
        return lambda x, t: self(x, xi[t])


class NoisyHard(NormalNoise):
    """Algorithm 1 of Gulcehre et al. 2016 around the hard unit ``h`` and its linearisation ``u``.

    ``p`` is a learnable (C,) parameter (``channelwise=True``) or one shared value; the noise is
    drawn as :class:`NormalNoise` says.
    """

    h: Callable[[torch.Tensor], torch.Tensor]
    u: Callable[[torch.Tensor], torch.Tensor]

    def __init__(
        self,
        num_channels: int | None,
        channel_dim: int,
        alpha: float,
        c: float,
        p: float,
        channelwise: bool,
    ) -> None:
        super().__init__(num_channels, channel_dim)
        if not float(c) >= 0:
            raise ValueError(f"{type(self).__name__} needs a noise scale c >= 0, got c={c!r}")
        self.alpha = float(alpha)
        self.c = float(c)
        self.p = nn.Parameter(self.channel_values(p, channelwise))

    def noise_scale(self, x: torch.Tensor) -> torch.Tensor:
        """d(x) * sigma(x): the signed standard scale of the noise term (0 where h is linear)."""
        delta = self.h(x) - self.u(x)
        p = self.per_channel(self.p, x).to(x.dtype)
        sigma = self.c * (torch.sigmoid(p * delta) - 0.5).square()
        sign = math.copysign(1.0, 1.0 - self.alpha) if self.alpha != 1.0 else 0.0
        return -torch.sign(x) * sign * sigma

    def half_normal(self, x: torch.Tensor, xi: torch.Tensor | None) -> torch.Tensor | float:
        """|xi| while training (drawn here unless given), its mean sqrt(2/pi) at evaluation."""
        if not self.training:
            return HALF_NORMAL_MEAN
        return (self.standard_normal(x) if xi is None else xi).abs()

    def forward(self, x: torch.Tensor, xi: torch.Tensor | None = None) -> torch.Tensor:
        """``xi``: the N(0, 1) draws to use in training instead of drawing them here."""
        self.channels_in(x, self.p)
        hx, ux = self.h(x), self.u(x)
        noise = self.noise_scale(x) * self.half_normal(x, xi)
        return self.alpha * hx + (1.0 - self.alpha) * ux + noise

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, c={self.c}, channels={self.p.numel()}, {super().extra_repr()}"


@register("noisy_hard_tanh")
class NoisyHardTanh(NoisyHard):
    """Noisy hard tanh (NAN with learned p): Algorithm 1 around max(min(x, 1), -1) and u(x) = x."""

    h = staticmethod(hard_tanh)
    u = staticmethod(linear_tanh)

    def __init__(
        self,
        num_channels: int | None = None,
        channel_dim: int = 1,
        alpha: float = 1.15,
        c: float = 0.5,
        p: float = 1.0,
        channelwise: bool = True,
    ) -> None:
        super().__init__(num_channels, channel_dim, alpha, c, p, channelwise)


@register("noisy_hard_sigmoid")
class NoisyHardSigmoid(NoisyHard):
    """Noisy hard sigmoid (NAN, learned p): Algorithm 1 around the hard sigmoid, u = x/4 + 1/2."""

    h = staticmethod(hard_sigmoid)
    u = staticmethod(linear_sigmoid)

    def __init__(
        self,
        num_channels: int | None = None,
        channel_dim: int = 1,
        alpha: float = 1.1,
        c: float = 0.15,
        p: float = 1.0,
        channelwise: bool = True,
    ) -> None:
        super().__init__(num_channels, channel_dim, alpha, c, p, channelwise)


@register("noisy_relu")
class NoisyReLU(NormalNoise):
    """relu(x + c * xi), xi ~ N(0, 1) while training; relu(x) at evaluation (the noise's mean 0).

    ReLU's gap to its linearisation is zero on the active side, so Gulcehre et al. inject the noise
    into the input instead (the authors' ``NReLU``, c = 0.05).
    """

    def __init__(
        self, num_channels: int | None = None, channel_dim: int = 1, c: float = 0.05
    ) -> None:
        super().__init__(num_channels, channel_dim)
        if not float(c) >= 0:
            raise ValueError(f"noisy_relu needs a noise scale c >= 0, got c={c!r}")
        self.c = float(c)

    def forward(self, x: torch.Tensor, xi: torch.Tensor | None = None) -> torch.Tensor:
        """``xi``: the N(0, 1) draws to use in training instead of drawing them here."""
        if not self.training:
            return F.relu(x)
        if xi is None:
            xi = self.standard_normal(x)
        return F.relu(x + self.c * xi)

    def extra_repr(self) -> str:
        return f"c={self.c}, {super().extra_repr()}"

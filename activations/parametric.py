"""Units with per-channel parameters: PReLU, MPELU and TLU.

A parameter is one value per channel (``channelwise=True``, needs ``num_channels``) or one
shared value. It broadcasts along ``channel_dim``: 1 for conv maps (N, C, H, W) and linear
outputs (N, C), -1 for channels-last data such as a GRU's (T, N, H) hidden sequence. Learnable
ones are ``nn.Parameter`` s of the module, so ``activations.activation_parameters(model)``
finds them for their own learning rate and weight decay.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from activations import fused
from activations.backend import path_for
from activations.base import Activation, Recomputed, StepFunction
from activations.registry import register


class PerChannel(Activation):
    """A unit with per-channel parameters, a fused fast path (``fast``) and its plain-autograd
    twin (``reference``); each call runs the one ``backend.path_for`` picks for its size."""

    fast_path = True
    #: the parameter whose size is checked against the input's channels
    channel_param: ClassVar[str]
    #: how much dearer the twin is than the fast path (``backend.path_for``)
    twin_cost: ClassVar[int] = 1

    def forward(self, x: torch.Tensor, twin: bool = False) -> torch.Tensor:
        """``twin``: run the twin without the per-call checks (``over_sequence``'s steps)."""
        if twin:
            return self.reference(x)
        self.channels_in(x, getattr(self, self.channel_param))
        if path_for(x.numel(), self.twin_cost) == "reference":
            return self.reference(x)
        return self.fast(x)

    def over_sequence(self, like: torch.Tensor) -> StepFunction:
        """Checks the channels and picks the path once for all steps: a GRU step's (50, 128)
        runs the twin, and through the module with the per-call checks MPELU's step took 42 us,
        without them 31 (AVX2 EPYC, 2 threads)."""
        self.channels_in(like, getattr(self, self.channel_param))
        twin = path_for(like[0].numel(), self.twin_cost) == "reference"
        return lambda x, t: self(x, twin)

    def recompute(self, x: torch.Tensor) -> Recomputed:
        """Through the fused kernels (``fast_recompute``) where a call on ``x`` would take
        the fast path, else the default's autograd over the twin."""
        if path_for(x.numel(), self.twin_cost) == "reference":
            return super().recompute(x)
        return self.fast_recompute(x)

    def fast_recompute(self, x: torch.Tensor) -> Recomputed:
        """``recompute`` on the fast path. This default is autograd over ``fast``; MPELU and
        TLU take their output and slope in one pass of their own kernels instead (a GRU's
        backward, 2,500 rows of 128, with the parameters' gradients: MPELU 1.83 against 0.74
        ms; TLU's twin, which it ran before, 1.37 against 0.53; AVX2 EPYC, 2 threads)."""
        return super().recompute(x)

    @abstractmethod
    def fast(self, x: torch.Tensor) -> torch.Tensor:
        """The fused fast path (``activations.fused``)."""

    @abstractmethod
    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The plain-autograd twin: the definition the fast path is tested against."""


@register("prelu")
class PReLU(PerChannel):
    """x for x >= 0, a_c * x otherwise, a learned (He et al. 2015: init 0.25, channel-wise).

    ``weight`` holds a_c, shape (C,) or shared (1,). The fast path is ``fused.prelu`` (one pass
    for the input and slope gradients, in float32 under bf16 autocast); ``reference`` is torch's
    ``F.prelu``, which took 3x ReLU's forward+backward time on fp32 maps on this CPU and 7x on
    bf16 ones, and sums the slope's gradient in bf16 under autocast.

    ``clip`` is cxxnet's PReLU (dmlc/cxxnet 9c58c27 src/layer/prelu_layer-inl.hpp), which Xu et
    al. 2015 ran: the forward uses the slope clipped to [0, 1] (``:134``) and so does the input
    gradient (``:148``), while the slope's gradient is the unclipped sum of x * grad over x <= 0
    (``:146``), so a slope pushed past a bound still moves and can come back (straight-through;
    the exact derivative, 0 outside [0, 1], would freeze it for good under zero decay).
    """

    channel_param = "weight"
    twin_cost = fused.PRELU_TWIN_COST

    def __init__(
        self,
        num_channels: int | None = None,
        channel_dim: int = 1,
        init: float = 0.25,
        channelwise: bool = True,
        clip: bool = False,
    ) -> None:
        super().__init__(num_channels, channel_dim)
        self.init = float(init)
        self.clip = bool(clip)
        self.weight = nn.Parameter(self.channel_values(init, channelwise))

    @property
    def he_slope(self) -> float:
        return self.init

    def slope(self) -> torch.Tensor:
        """The slope the forward uses: the weight, or with ``clip`` its value clipped to [0, 1]
        and its gradient passed straight through to the weight (see above)."""
        w = self.weight
        return w + (w.clamp(0.0, 1.0) - w).detach() if self.clip else w

    def fast(self, x: torch.Tensor) -> torch.Tensor:
        return fused.prelu(x, self.slope(), self.channel_dim)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """torch's ``F.prelu`` (the slope cast to the input's dtype, as it requires)."""
        w = self.slope().to(x.dtype)
        if self.channel_dim == 1 or x.dim() <= 2:
            return F.prelu(x, w)
        return F.prelu(x.movedim(-1, 1), w).movedim(1, -1)

    def extra_repr(self) -> str:
        clip = ", clip=[0, 1]" if self.clip else ""
        return f"init={self.init}{clip}, channels={self.weight.numel()}, {super().extra_repr()}"


@register("mpelu")
class MPELU(PerChannel):
    """x for x > 0, alpha_c (exp(beta_c x) - 1) otherwise, alpha and beta learned (Li et al.).

    alpha = 0 gives ReLU, alpha = beta = 1 gives ELU; small beta is PReLU-like with slope
    alpha*beta near 0. Defaults are the authors' PyTorch code's (alpha 0.25, beta 1, per
    channel). The fast path is ``fused.mpelu``; ``reference`` is its plain-autograd twin.
    """

    channel_param = "alpha"
    twin_cost = fused.MPELU_TWIN_COST

    def __init__(
        self,
        num_channels: int | None = None,
        channel_dim: int = 1,
        alpha: float = 0.25,
        beta: float = 1.0,
        channelwise: bool = True,
    ) -> None:
        super().__init__(num_channels, channel_dim)
        self.alpha_init, self.beta_init = float(alpha), float(beta)
        self.alpha = nn.Parameter(self.channel_values(alpha, channelwise))
        self.beta = nn.Parameter(self.channel_values(beta, channelwise))

    @property
    def taylor_slope(self) -> float:
        return self.alpha_init * self.beta_init

    def fast(self, x: torch.Tensor) -> torch.Tensor:
        return fused.mpelu(x, self.alpha, self.beta, self.channel_dim)

    def fast_recompute(self, x: torch.Tensor) -> Recomputed:
        return fused.mpelu_recompute(x, self.alpha, self.beta, self.channel_dim)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """Plain-autograd twin (exp taken of min(x, 0), as the authors' code does).

        Split with ReLU rather than ``torch.where``, which took 30x an add's time on this CPU
        (a GRU runs this twin at every time step): p = relu(x) and m = x - p = min(x, 0) add
        up to x exactly, and p + alpha (exp(beta m) - 1) is x for x > 0 and the exponential
        branch for x <= 0. relu's gradient at 0 is 0, so m's is 1 and the slope at x = 0 is
        the Caffe layer's alpha * beta (x <= 0 takes the exponential branch). Five ops, with
        expm1 for exp - 1."""
        a, b = self.per_channel(self.alpha, x), self.per_channel(self.beta, x)
        positive = torch.relu(x)
        return torch.addcmul(positive, a, torch.expm1(b * (x - positive))).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha_init}, beta={self.beta_init}, channels={self.alpha.numel()}, "
            f"{super().extra_repr()}"
        )


@register("tlu")
class TLU(PerChannel):
    """x for x >= 0, alpha * tanh(x) otherwise (Jiang & Wang 2018, formula as the brief gives it).

    Bounded below by -alpha like ELU but through tanh. ``learnable=False`` keeps alpha a fixed
    buffer (``channelwise`` is then moot: one value); ``learnable=True`` makes it a parameter,
    one per channel unless ``channelwise=False``. The fast path is ``fused.tlu``;
    ``reference`` is its plain-autograd twin.
    """

    channel_param = "alpha"
    twin_cost = fused.TLU_TWIN_COST

    def __init__(
        self,
        num_channels: int | None = None,
        channel_dim: int = 1,
        alpha: float = 1.0,
        learnable: bool = False,
        channelwise: bool = True,
    ) -> None:
        super().__init__(num_channels, channel_dim)
        self.alpha_init = float(alpha)
        self.learnable = bool(learnable)
        self.alpha: torch.Tensor
        if self.learnable:
            self.alpha = nn.Parameter(self.channel_values(alpha, channelwise))
        else:
            self.register_buffer("alpha", self.channel_values(alpha, channelwise=False))

    @property
    def taylor_slope(self) -> float:
        return self.alpha_init

    def fast(self, x: torch.Tensor) -> torch.Tensor:
        return fused.tlu(x, self.alpha, self.channel_dim)

    def fast_recompute(self, x: torch.Tensor) -> Recomputed:
        return fused.tlu_recompute(x, self.alpha, self.channel_dim, self.learnable)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """Plain-autograd twin, split with ReLU as MPELU's is: r = relu(-x) = -min(x, 0) has
        gradient 0 at x = 0, so (x + r) - alpha tanh(r) is x for x >= 0 (slope 1 at 0) and
        alpha tanh(x) below (tanh is odd), both exactly. Five ops: a GRU runs this at every
        time step, where each op costs microseconds whatever it computes."""
        r = torch.relu(-x)
        alpha = self.per_channel(self.alpha, x)
        return torch.addcmul(x + r, alpha, torch.tanh(r), value=-1).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha_init}, learnable={self.learnable}, "
            f"channels={self.alpha.numel()}, {super().extra_repr()}"
        )

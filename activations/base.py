"""The contract every activation module keeps, so models and inits never special-case names."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import torch
from torch import nn

#: f(x_t, t): the unit applied to step t of a sequence (see ``Activation.over_sequence``)
StepFunction = Callable[[torch.Tensor, int], torch.Tensor]


class Recomputed(NamedTuple):
    """A unit run again over a whole sequence for a recurrence's backward (``recompute``)."""

    value: torch.Tensor  #: the outputs, as the forward pass made them
    slope: torch.Tensor  #: dy/dx, entry by entry
    #: dL/dy -> the gradients of the unit's ``parameters()``, in that order
    param_grads: Callable[[torch.Tensor], tuple[torch.Tensor | None, ...]]


class Activation(nn.Module):
    """Base class of every registered unit.

    ``channel_dim`` says where per-channel parameters live: 1 for conv maps and (N, C) linear
    outputs, -1 for channels-last tensors such as a GRU's (T, N, H) hidden sequence.
    Subclasses that change the channel count override ``out_channels``; subclasses with a
    negative-side slope override ``he_slope`` / ``taylor_slope`` so inits need no name lookups.
    """

    #: True for units with a fused fast path whose plain-autograd twin the ``reference``
    #: backend runs instead (see ``activations.backend``).
    fast_path: ClassVar[bool] = False
    #: the generator a unit that draws random numbers draws from when set (seed it for
    #: reproducible draws), else torch's default generator of the input's device; code that
    #: replays the draws (the GRU's backward) replays this one too
    generator: torch.Generator | None = None

    def __init__(self, num_channels: int | None = None, channel_dim: int = 1) -> None:
        super().__init__()
        if channel_dim not in (1, -1):
            raise ValueError(f"channel_dim={channel_dim!r} is not allowed; use 1 or -1")
        self.num_channels = num_channels
        self.channel_dim = channel_dim

    @property
    def draws_random(self) -> bool:
        """Whether a forward call draws random numbers (RReLU while training). Such a unit
        draws from ``generator`` and defines ``over_sequence``, so that code recomputing it
        (the GRU's backward) can replay its draws in one call."""
        return False

    def over_sequence(self, like: torch.Tensor) -> StepFunction:
        """How a recurrence applies the unit to step t of a sequence shaped like ``like``
        (T, ...): a function f(x_t, t), called for t = 0, 1, ... in order, through the
        module (so forward hooks see every step).

        Contract: the steps' outputs equal those of one ``forward`` over the whole sequence
        called from the same generator state, so code that recomputes the unit (the GRU's
        backward) makes that one call. A unit that draws random numbers overrides this to draw
        the whole sequence's numbers at once; the default, one plain call per step, keeps the
        contract only for units that draw none.
        """
        if self.draws_random:
            raise NotImplementedError(
                f"{type(self).__name__} draws random numbers but does not define over_sequence"
            )
        return lambda x, t: self(x)

    def recompute(self, x: torch.Tensor) -> Recomputed:
        """The unit over a whole sequence ``x`` once more, for a recurrence's hand-written
        backward (the GRU's): its outputs, its derivative entry by entry, and a function from
        dL/dy to its parameters' gradients. Only elementwise units have a derivative that is
        one number per entry; every registered unit the GRU takes is one.

        This default runs ``forward`` (not ``__call__``: observers' hooks saw the steps already)
        under autograd and asks it twice, once with ones for the slope and once with dL/dy for
        the parameters, so each pass through a fused unit's backward computes half of what it
        is asked for. Units with fused kernels override it with fewer passes. A unit that draws
        random numbers draws here as in its ``over_sequence``; the caller replays them.
        """
        params = tuple(self.parameters())
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            y = self.forward(leaf)
            (slope,) = torch.autograd.grad(y, leaf, torch.ones_like(y), retain_graph=bool(params))

        def param_grads(g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
            return torch.autograd.grad(y, params, g, allow_unused=True) if params else ()

        return Recomputed(y.detach(), slope, param_grads)

    def out_channels(self, in_channels: int) -> int:
        """Channels out for ``in_channels`` in (CReLU doubles them, Maxout divides them)."""
        return in_channels

    @property
    def he_slope(self) -> float:
        """Negative-side slope ``a`` of a piecewise-linear rectifier for He's gain sqrt(2/(1+a^2)).

        Units that are not piecewise-linear rectifiers keep He's ReLU assumption, a = 0.
        """
        return 0.0

    @property
    def taylor_slope(self) -> float:
        """Slope just left of zero at initialisation (MPELU's alpha*beta), for Taylor init."""
        return self.he_slope

    def channel_values(self, value: float, channelwise: bool) -> torch.Tensor:
        """Initial values of a per-channel parameter: (num_channels,) filled, or (1,) shared.

        A channelwise parameter cannot be sized without the channel count, so its absence is
        an error here rather than a broadcasting surprise at the first forward.
        """
        if not channelwise:
            return torch.full((1,), float(value))
        if self.num_channels is None or self.num_channels < 1:
            raise ValueError(
                f"{type(self).__name__} with channelwise=True needs num_channels >= 1 "
                f"(got {self.num_channels!r}); pass num_channels=C or channelwise=False"
            )
        return torch.full((self.num_channels,), float(value))

    def channels_in(self, x: torch.Tensor, param: torch.Tensor | None = None) -> int:
        """Channel count of ``x`` at ``channel_dim``, checked against a per-channel ``param``."""
        if x.dim() < (2 if self.channel_dim == 1 else 1):
            raise ValueError(
                f"{type(self).__name__} expects channels at dim {self.channel_dim}, "
                f"got a tensor of shape {tuple(x.shape)}"
            )
        channels = x.shape[self.channel_dim]
        if param is not None and param.numel() != 1 and param.numel() != channels:
            raise ValueError(
                f"{type(self).__name__} has {param.numel()} per-channel parameters but the input "
                f"has {channels} channels at dim {self.channel_dim} (shape {tuple(x.shape)})"
            )
        return channels

    def per_channel(self, param: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """View a (C,) or (1,) parameter so it broadcasts against ``x`` along ``channel_dim``."""
        if param.numel() == 1 or self.channel_dim == -1 or x.dim() <= 2:
            return param
        return param.view((1, -1) + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, channel_dim={self.channel_dim}"


class Pointwise(Activation):
    """A parameter-free unit applied entry by entry: layout and channels do not matter to it."""

    fn: Callable[[torch.Tensor], torch.Tensor]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

"""The contract every activation module keeps, so models and inits never special-case names."""

from __future__ import annotations

import torch
from torch import nn


class Activation(nn.Module):
    """Base class of every registered unit.

    ``channel_dim`` says where per-channel parameters live: 1 for conv maps and (N, C) linear
    outputs, -1 for channels-last tensors such as a GRU's (T, N, H) hidden sequence.
    Subclasses that change the channel count override ``out_channels``; subclasses with a
    negative-side slope override ``he_slope`` / ``taylor_slope`` so inits need no name lookups.
    """

    def __init__(self, num_channels: int | None = None, channel_dim: int = 1) -> None:
        super().__init__()
        if channel_dim not in (1, -1):
            raise ValueError(f"channel_dim={channel_dim!r} is not allowed; use 1 or -1")
        self.num_channels = num_channels
        self.channel_dim = channel_dim

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

    def per_channel(self, param: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """View a (C,) or (1,) parameter so it broadcasts against ``x`` along ``channel_dim``."""
        if param.numel() == 1 or self.channel_dim == -1 or x.dim() <= 2:
            return param
        return param.view((1, -1) + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, channel_dim={self.channel_dim}"

"""Units that change the channel count; models size the next layer with ``out_channels``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from activations.base import Activation
from activations.registry import register


@register("maxout")
class Maxout(Activation):
    """Elementwise maximum over k groups of channels (Goodfellow et al. 2013); C in -> C/k out.

    The k groups are the k contiguous blocks of C/k channels: output channel j is the max of
    input channels j, j + C/k, ..., j + (k-1) C/k (Caffe's Slice + Eltwise-MAX construction).
    A k that does not divide the channels fails when it is first known: at construction when
    ``num_channels`` is given, else at the first forward.
    """

    def __init__(self, num_channels: int | None = None, channel_dim: int = 1, k: int = 2) -> None:
        super().__init__(num_channels, channel_dim)
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"maxout needs an integer k >= 1, got k={k!r}")
        self.k = int(k)
        if num_channels is not None:
            self.out_channels(num_channels)

    def out_channels(self, in_channels: int) -> int:
        if in_channels % self.k:
            raise ValueError(
                f"maxout k={self.k} does not divide the {in_channels} input channels; "
                f"use a channel count that is a multiple of {self.k}"
            )
        return in_channels // self.k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = self.channels_in(x)
        dim = self.channel_dim % x.dim()
        return x.unflatten(dim, (self.k, self.out_channels(channels))).amax(dim)

    def extra_repr(self) -> str:
        return f"k={self.k}, {super().extra_repr()}"


@register("crelu")
class CReLU(Activation):
    """concat(relu(x), relu(-x)) along the channels (Shang et al. 2016); C in -> 2C out.

    Keeps the negative half of the signal at ReLU's cost; halve the filters of the layer
    before it to keep width and compute comparable.
    """

    def out_channels(self, in_channels: int) -> int:
        return 2 * in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.channels_in(x)
        return torch.cat((F.relu(x), F.relu(-x)), dim=self.channel_dim)

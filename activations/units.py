"""Placeholder: the activation helper replaces this with the real unit modules."""

import torch

from activations.base import Activation
from activations.registry import register


@register("relu")
class ReLU(Activation):
    """max(x, 0)."""

    def __init__(self, num_channels: int | None = None, channel_dim: int = 1) -> None:
        super().__init__(num_channels, channel_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

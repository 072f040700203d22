"""Network in Network (Lin et al. 2014) as the MPELU authors ran it on CIFAR-10.

Layout from their Caffe prototxts (docs/papers.md §1a): three blocks of a spatial conv
and two 1x1 "cccp" convs, a unit after every conv (the class maps too, by default), max pool then
average pool 3/2 each followed by dropout, and a global average pool instead of FC layers. Caffe
rounds pooled sizes up, so the pools use ``ceil_mode`` (32 -> 16 -> 8 rather than 15 -> 7).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from activations import Activation
from experiments.models import ActivationFactory, register_model
from experiments.models.common import (
    Dropout,
    check_dropout,
    pair_weight_layers,
    positive_ints,
    sized_unit,
)

#: Kernel sizes of conv1, cccp1, cccp2 / conv2, cccp3, cccp4 / conv3, cccp5, cccp6.
KERNELS = (5, 1, 1, 5, 1, 1, 3, 1, 1)
#: Filters of the first eight convs; the ninth has one filter per class.
WIDTHS = (192, 160, 96, 192, 192, 192, 192, 192)
#: Index of the conv after which each block's pool and dropout come.
_MAX_POOL_AFTER, _AVG_POOL_AFTER = 2, 5


@register_model("nin")
class NIN(nn.Module):
    """NIN with any registered unit; 966,986 parameters for 10 classes with ReLU.

    ``widths`` shrinks the net for CPU runs. ``final_activation`` keeps the unit on the class maps
    as the prototxts do. ``equal_params`` sizes each conv so its unit outputs the nominal width
    (the papers' recipes: CReLU half the filters, Maxout(k) k times as many); this equalises
    widths, not counts (CReLU about halves the parameters, Maxout(k) multiplies them by about k).
    Without it a channel-changing unit changes the next layer's input instead. The class layer
    is always sized so the net emits ``num_outputs`` logits.
    """

    def __init__(
        self,
        act: ActivationFactory,
        *,
        num_outputs: int,
        in_channels: int,
        widths: Sequence[int] = WIDTHS,
        dropout: float = 0.5,
        final_activation: bool = True,
        equal_params: bool = False,
    ) -> None:
        super().__init__()
        widths = positive_ints("model.widths", widths, length=len(WIDTHS))
        p = check_dropout(dropout)
        layers: list[nn.Module] = []
        channels = in_channels
        for i, (kernel, width) in enumerate(zip(KERNELS, [*widths, num_outputs], strict=True)):
            is_classifier = i == len(KERNELS) - 1
            if is_classifier and not final_activation:
                layers.append(nn.Conv2d(channels, num_outputs, kernel, padding=kernel // 2))
                continue
            filters, unit = sized_unit(act, width, match_width=equal_params or is_classifier)
            layers += [nn.Conv2d(channels, filters, kernel, padding=kernel // 2), unit]
            channels = unit.out_channels(filters)
            if i == _MAX_POOL_AFTER:
                layers += [nn.MaxPool2d(3, 2, ceil_mode=True), Dropout(p)]
            elif i == _AVG_POOL_AFTER:
                layers += [nn.AvgPool2d(3, 2, ceil_mode=True), Dropout(p)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def weight_layers(self) -> list[tuple[nn.Module, Activation | None]]:
        return pair_weight_layers(list(self.layers))

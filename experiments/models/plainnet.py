"""A deep plain CNN without BatchNorm: our CIFAR adaptation of the MPELU paper's 30-layer net.

The paper's ImageNet net (docs/papers.md §1b) is a 7x7/2 stem conv, 4 convs 2x2 at
128, 22 convs 2x2 at 256 (max pools between stages), SPP and three FC layers: 27 conv + 3 FC.
Its 52-layer twin adds convs to the last stage only, so ``depth`` does the same here. For 32x32
inputs the stem is a 3x3/1 conv, a stage is entered by max pooling (``strides``), 2x2 convs
alternate padding 0 and 1 so maps shrink and regrow by one pixel (the paper's pad-1 convs would
grow them every layer), and a global average pool replaces SPP. Plain nets of this depth only
train from a good init, which is what the deep-plain-net study compares.
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
    int_at_least,
    pair_weight_layers,
    positive_ints,
    sized_unit,
)

#: The stem conv sees the 32x32 image at full resolution; 3x3 with pad 1 keeps its size.
STEM_KERNEL = 3


@register_model("plainnet")
class PlainNet(nn.Module):
    """``depth`` weight layers: convs in stages of ``widths``, hidden FCs, a linear classifier.

    ``stage_convs`` fixes the conv count of every stage but the last, which takes the rest of
    ``depth``; the first conv of the first stage is the 3x3 stem. Dropout follows each hidden FC
    unit as in the paper. ``bn`` puts BatchNorm between every conv and its unit (for contrast; the
    paper's deep nets have none). ``equal_params`` sizes layers so each unit outputs the nominal
    width, as NIN's option does (equal widths; parameter counts then differ, see NIN).
    ``fc_std`` gives each FC layer (the hidden ones, then the classifier) a fixed Gaussian
    filler that the variance-scaling inits keep, as the prototxts fill their FCs with fixed
    stds whatever the convs' variance mode (``fixed_fillers``).
    """

    def __init__(
        self,
        act: ActivationFactory,
        *,
        num_outputs: int,
        in_channels: int,
        depth: int = 30,
        widths: Sequence[int] = (64, 128, 256),
        strides: Sequence[int] = (1, 2, 2),
        stage_convs: Sequence[int] = (1, 4),
        kernel_size: int = 2,
        fc_widths: Sequence[int] = (1024, 1024),
        dropout: float = 0.5,
        bn: bool = False,
        equal_params: bool = False,
        fc_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        widths = positive_ints("model.widths", widths)
        strides = positive_ints("model.strides", strides, length=len(widths))
        stage_convs = positive_ints(
            "model.stage_convs", stage_convs, length=len(widths) - 1, allow_empty=True
        )
        kernel_size = int_at_least("model.kernel_size", kernel_size, 1)
        fc_widths = positive_ints("model.fc_widths", fc_widths, allow_empty=True)
        p = check_dropout(dropout)
        fixed = sum(stage_convs) + len(fc_widths) + 1
        depth = int_at_least(
            "model.depth",
            depth,
            fixed + 1,
            f" (stage_convs, fc_widths and the classifier use {fixed})",
        )
        convs_per_stage = [*stage_convs, depth - fixed]

        def conv_unit(
            channels: int, width: int, kernel: int, pad: int
        ) -> tuple[list[nn.Module], int]:
            filters, unit = sized_unit(act, width, match_width=equal_params)
            conv = nn.Conv2d(channels, filters, kernel, padding=pad, bias=not bn)
            norm = [nn.BatchNorm2d(filters)] if bn else []
            return [conv, *norm, unit], unit.out_channels(filters)

        layers: list[nn.Module] = []
        channels = in_channels
        for stage, (width, stride, count) in enumerate(
            zip(widths, strides, convs_per_stage, strict=True)
        ):
            if stride > 1:
                layers.append(nn.MaxPool2d(stride, stride))
            shapes = [(STEM_KERNEL, STEM_KERNEL // 2)] if stage == 0 else []
            # pads (k-1)//2 then k//2 in turn: 0, 1 for 2x2 (shrink, regrow); 1, 1 for 3x3
            shapes += [
                (kernel_size, (kernel_size - 1 + j % 2) // 2) for j in range(count - len(shapes))
            ]
            for kernel, pad in shapes:
                block, channels = conv_unit(channels, width, kernel, pad)
                layers += block
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        for width in fc_widths:
            filters, unit = sized_unit(act, width, match_width=equal_params)
            layers += [nn.Linear(channels, filters), unit, Dropout(p)]
            channels = unit.out_channels(filters)
        layers.append(nn.Linear(channels, num_outputs))
        self.layers = nn.Sequential(*layers)
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        stds = [] if fc_std is None else list(fc_std)
        if fc_std is not None and (
            len(stds) != len(linears)
            or any(isinstance(s, bool) or not isinstance(s, int | float) or s <= 0 for s in stds)
        ):
            raise ValueError(
                f"model.fc_std={stds!r} is not allowed; use null or {len(linears)} positive stds "
                f"(one per hidden FC of fc_widths, then the classifier)"
            )
        self._fc_std = list(zip(linears, map(float, stds), strict=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def weight_layers(self) -> list[tuple[nn.Module, Activation | None]]:
        return pair_weight_layers(list(self.layers))

    def fixed_fillers(self) -> dict[nn.Module, float]:
        """Weight layers whose Gaussian std the net fixes (``fc_std``); see experiments.inits."""
        return dict(self._fc_std)

"""Helpers the image models share: option checks, unit-aware layer sizing, weight-layer pairing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from activations import Activation, fused
from experiments.models import ActivationFactory

#: How far past the nominal width ``filters_for`` looks; Maxout with k pieces needs k x width.
_MAX_WIDTH_FACTOR = 16


def check_dropout(p: float) -> float:
    """Dropout must keep something: p = 1 would zero every activation and the loss gradient."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"model.dropout={p!r} is not allowed; use a probability with 0 <= p < 1")
    return float(p)


class Dropout(nn.Module):
    """Inverted dropout (zero with probability p, scale the rest by 1 / (1 - p)) whose mask
    comes from 14-bit draws cut from ``random_`` words, ``activations.fused.random_bits``.

    torch's ``nn.Dropout`` draws its CPU mask one element at a time through ``bernoulli_``:
    99 ms of a 660 ms NIN bf16 training step at batch 128 (15%, torch.profiler), against about
    1 ns per element here. p is applied at 14-bit resolution (the cut is round(p * 2**14)
    of 2**14 cells; p = 0.5 is exact). The draws come from torch's default generator, so
    ``torch.manual_seed`` fixes them as it fixes ``nn.Dropout``'s.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = check_dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        cut = round(self.p * 2**fused.UNIFORM_BITS)
        scale = fused.dropout_scale(*fused.random_bits(x), cut, 1 / (1 - self.p))
        return x * scale.to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def int_at_least(name: str, value: int, minimum: int, why: str = "") -> int:
    """Validate one integer option; ``why`` explains a minimum that is not simply 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{name}={value!r} is not allowed; it must be an integer >= {minimum}{why}"
        )
    return value


def positive_ints(
    name: str, values: Iterable[int], length: int | None = None, allow_empty: bool = False
) -> list[int]:
    """Validate a width/count list from a config (Hydra hands over a ListConfig, not a list)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name}={values!r} is not allowed; use a list of positive integers")
    out = list(values)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ValueError(f"{name}={out!r} is not allowed; use a list of positive integers")
    if not out and not allow_empty:
        raise ValueError(f"{name}=[] is not allowed; it needs at least one positive integer")
    if length is not None and len(out) != length:
        raise ValueError(f"{name}={out!r} has {len(out)} entries; it needs exactly {length}")
    return out


def filters_for(act: ActivationFactory, width: int) -> int:
    """The filter count whose following unit emits ``width`` channels.

    This is the CReLU paper's "halve the filters" and Maxout's k filters per output unit, asked of
    the unit itself (smallest count it maps to ``width``) so models never switch on names.
    """
    probe = act(width, channel_dim=1)
    for filters in range(1, _MAX_WIDTH_FACTOR * width + 1):
        try:
            produced = probe.out_channels(filters)
        except ValueError:  # e.g. Maxout(k) on a count that k does not divide
            continue
        if produced == width:
            return filters
    raise ValueError(
        f"activation {type(probe).__name__} cannot output {width} channels from any layer of "
        f"1..{_MAX_WIDTH_FACTOR * width} filters; choose widths it can produce"
    )


def sized_unit(act: ActivationFactory, width: int, match_width: bool) -> tuple[int, Activation]:
    """Filters for a layer of nominal ``width`` and the unit that follows it.

    With ``match_width`` the layer is sized so the unit outputs ``width`` channels (see
    ``filters_for``); otherwise the layer has ``width`` filters and the unit may change that.
    """
    filters = filters_for(act, width) if match_width else width
    return filters, act(filters, channel_dim=1)


def pair_weight_layers(modules: Sequence[nn.Module]) -> list[tuple[nn.Module, Activation | None]]:
    """Conv/linear layers in ``modules`` order, each with the first unit before the next layer.

    Models register their modules in forward order, so this needs no bookkeeping that could
    drift from ``forward`` (normalisation or pooling between a layer and its unit is skipped).
    """
    pairs: list[tuple[nn.Module, Activation | None]] = []
    for module in modules:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            pairs.append((module, None))
        elif isinstance(module, Activation) and pairs and pairs[-1][1] is None:
            pairs[-1] = (pairs[-1][0], module)
    return pairs

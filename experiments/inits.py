"""Weight initialisations as config: ``initialize(model, name, batches=None, **params)``.

Variance-scaling inits (He, Taylor, Xavier, Gaussian) set the weights of ``model.weight_layers()``
and zero their biases; nothing else (normalisation layers, activation parameters) is touched.
A layer the model gives a fixed filler (``model.fixed_fillers()``: the plain net's FCs, which the
MPELU prototxts fill with fixed Gaussians whatever the convs' variance mode) gets N(0, std^2)
from these inits instead; LSUV, being data-driven, rescales every layer as the authors' script.
He and Taylor take the slope from the unit that *follows* each layer, as the MPELU authors'
Caffe prototxts configure each layer's filler with that unit's alpha and beta. He et al. derive
the gain from the unit that feeds a layer; in a net with one kind of unit the two agree for
every layer but the first (whose input is not rectified; He et al. note that one factor is
harmless) and the last. A layer with no unit after it (a linear classifier) gets gain 1, the
linear-layer value: no following rectifier discards half the signal power for a gain of sqrt(2)
to make up, and initial logits stay small.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

from activations import Activation, activation_parameters
from activations.registry import Registry
from experiments.modes import in_mode

#: the model comes from the trainer, and LSUV's input batches from the task.
INITS: Registry = Registry("init", fixed=("model", "batches"))

#: How ``n`` in std = gain / sqrt(n) is counted: Caffe's variance_norm FAN_IN, FAN_OUT, AVERAGE.
MODES = ("fan_in", "fan_out", "average")


def initialize(
    model: nn.Module,
    name: str,
    batches: Callable[[int], torch.Tensor] | None = None,
    **params: object,
) -> None:
    """Initialise ``model`` in place with init ``name``; ``batches(i)`` is the i-th input batch
    for the data-driven inits (LSUV)."""
    takes_batches = "batches" in inspect.signature(INITS.get(name)).parameters
    extra = {"batches": batches} if takes_batches else {}
    INITS.build(name, model, **extra, **params)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as Caffe's fillers count them: k*k*C_in and k*k*C_out for a conv."""
    receptive = weight[0][0].numel()
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _fan(weight: torch.Tensor, mode: str) -> float:
    fan_in, fan_out = fans(weight)
    return {"fan_in": fan_in, "fan_out": fan_out, "average": (fan_in + fan_out) / 2}[mode]


def rectifier_gain(slope: float) -> float:
    """sqrt(2 / (1 + a^2)): He et al.'s gain for negative slope a (Taylor's a is alpha*beta)."""
    return math.sqrt(2.0 / (1.0 + slope**2))


def _init_weight_layers(
    model: nn.Module,
    fill: Callable[[torch.Tensor, Activation | None], None],
    keep_fixed: bool = True,
) -> None:
    """Call ``fill(weight, following_unit)`` on every weight layer and zero its bias; with
    ``keep_fixed`` a layer of ``model.fixed_fillers()`` gets its own fixed Gaussian instead."""
    fixed = model.fixed_fillers() if keep_fixed and hasattr(model, "fixed_fillers") else {}
    with torch.no_grad():
        for layer, unit in model.weight_layers():
            if layer in fixed:
                layer.weight.normal_(0.0, fixed[layer])
            else:
                fill(layer.weight, unit)
            if layer.bias is not None:
                layer.bias.zero_()


def _scaled_normal(model: nn.Module, mode: str, slope: Callable[[Activation], float]) -> None:
    """N(0, (gain / sqrt(n))^2) with gain from ``slope`` of the following unit, 1 without one."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed; choose from: {', '.join(MODES)}")

    def fill(weight: torch.Tensor, unit: Activation | None) -> None:
        gain = 1.0 if unit is None else rectifier_gain(slope(unit))
        weight.normal_(0.0, gain / math.sqrt(_fan(weight, mode)))

    _init_weight_layers(model, fill)


def _register_he(mode: str) -> None:
    def he(model: nn.Module) -> None:
        """He et al. 2015: std = sqrt(2 / ((1 + a^2) n)), a = the following unit's he_slope."""
        _scaled_normal(model, mode, lambda unit: unit.he_slope)

    INITS.register(f"he_{mode}")(he)


for _mode in MODES:
    _register_he(_mode)


@INITS.register("taylor")
def taylor(model: nn.Module, mode: str = "fan_in") -> None:
    """MPELU paper: std = sqrt(2 / (n (1 + alpha^2 beta^2))), alpha*beta = the unit's taylor_slope.

    Default fan_in as Caffe's TaylorFiller; the authors' Torch ResNets count fan_out.
    """
    _scaled_normal(model, mode, lambda unit: unit.taylor_slope)


@INITS.register("xavier")
def xavier(model: nn.Module, mode: str = "average") -> None:
    """U(-b, b) with b = sqrt(3 / n), gain 1 everywhere. ``average`` (n = (fan_in + fan_out)/2)
    is Glorot & Bengio 2010; ``fan_in`` is Caffe's XavierFiller default (filler.hpp:150-160),
    which the prototxts' ``xavier`` fillers mean."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed; choose from: {', '.join(MODES)}")

    def fill(weight: torch.Tensor, unit: Activation | None) -> None:
        bound = math.sqrt(3.0 / _fan(weight, mode))
        weight.uniform_(-bound, bound)

    _init_weight_layers(model, fill)


@INITS.register("gaussian")
def gaussian(model: nn.Module, std: float = 0.05) -> None:
    """N(0, std^2) for every weight layer: the NIN / MPELU CIFAR prototxts use std 0.05."""
    if not std > 0:
        raise ValueError(f"std={std!r} is not allowed; use a positive number")
    _init_weight_layers(model, lambda weight, unit: weight.normal_(0.0, std))


@INITS.register("uniform")
def uniform(model: nn.Module, a: float = 0.08) -> None:
    """U(-a, a) for every weight and bias in the model, as char-rnn (a = 0.08).

    Activation parameters keep their unit's own init: char-rnn has none, and U(-a, a) would turn
    an MPELU alpha of 0.25 or a PReLU slope into noise around zero.
    """
    if not a > 0:
        raise ValueError(f"a={a!r} is not allowed; use a positive number")
    skip = {id(p) for p in activation_parameters(model)}
    with torch.no_grad():
        for param in model.parameters():
            if id(param) not in skip:
                param.uniform_(-a, a)


@INITS.register("default")
def default(model: nn.Module) -> None:
    """Leave PyTorch's own layer initialisation in place (the baseline of 'no init choice')."""


@INITS.register("lsuv")
def lsuv(
    model: nn.Module,
    batches: Callable[[int], torch.Tensor] | None,
    tol: float = 0.02,
    max_iter: int = 20,
) -> None:
    """Mishkin & Matas 2015 (LSUV) as the MPELU authors' script runs it
    (50layer_imagenet/lsuv_init_python3.py): orthonormal weights, then in forward order each
    layer is rescaled by 1/sqrt(Var) until its output variance is within ``tol`` of 1, at most
    ``max_iter`` rescales per layer (then it moves on), with margin 0.02 and 20 iterations
    (``:82-83``) by default.

    As the script's Caffe train net (``:101``), the model is in train mode (dropout active) and
    every measurement draws a fresh batch: ``batches(i)`` is the i-th input batch (the trainer
    passes the training batches in order). The mode is restored afterwards. A layer whose
    output the forward pass never exposes to hooks (a fused GRU recurrence's recurrent
    projection) keeps its orthonormal weights, the usual init for recurrent matrices.
    """
    if batches is None:
        raise ValueError("init 'lsuv' needs input batches (the task's training batches)")
    if not tol > 0 or isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"lsuv needs tol > 0 and max_iter >= 1; got tol={tol!r}, {max_iter=!r}")
    _init_weight_layers(model, lambda weight, unit: nn.init.orthogonal_(weight), keep_fixed=False)
    draws = itertools.count()
    with in_mode(model, training=True):
        for index, (layer, _) in enumerate(model.weight_layers()):
            variance = _output_variance(model, layer, batches(next(draws)))
            for _ in range(max_iter):
                if variance is None or abs(variance - 1.0) <= tol:
                    break
                if not (variance > 0 and math.isfinite(variance)):
                    raise ValueError(
                        f"lsuv: weight layer {index} ({layer}) has output variance {variance} "
                        "on a training batch; it cannot be rescaled to 1"
                    )
                with torch.no_grad():
                    layer.weight.div_(math.sqrt(variance))
                variance = _output_variance(model, layer, batches(next(draws)))


def _output_variance(model: nn.Module, layer: nn.Module, batch: torch.Tensor) -> float | None:
    """Variance of ``layer``'s output in one forward pass of ``batch``, pooled over all its
    calls (a layer applied at every time step), or None if the pass never called it."""
    moments = [0, 0.0, 0.0]  # elements, sum of means, sum of second moments

    def record(module: nn.Module, inputs: object, out: torch.Tensor) -> None:
        var, mean = torch.var_mean(out.detach().double(), correction=0)
        n = out.numel()
        moments[0] += n
        moments[1] += n * mean.item()
        moments[2] += n * (var.item() + mean.item() ** 2)

    handle = layer.register_forward_hook(record)
    try:
        with torch.no_grad():
            model(batch)
    finally:
        handle.remove()
    n, first, second = moments
    return second / n - (first / n) ** 2 if n else None

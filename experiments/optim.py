"""Optimizers with the studies' parameter groups, and learning-rate schedules as functions.

Parameter groups follow the papers' per-blob multipliers (Caffe ``lr_mult`` / ``decay_mult``):
activation parameters (PReLU slopes, MPELU alpha/beta) get their own lr and weight-decay
multipliers, and biases can be kept out of weight decay. A schedule is a pure function
``step -> lr multiplier``, so resuming needs only the step and there is no scheduler state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from activations import activation_parameters

#: optimizer name -> torch class; every config key besides GROUP_KEYS is passed to it.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}
#: optimizer config keys that shape the parameter groups rather than the torch optimizer.
GROUP_KEYS = (
    "name",
    "lr",
    "weight_decay",
    "act_lr_mult",
    "act_weight_decay_mult",
    "bias_weight_decay",
)

Schedule = Callable[[int], float]


def _choose(kind: str, name: str, table: Mapping[str, Any]) -> Any:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose from: {', '.join(sorted(table))}")
    return table[name]


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    act_lr_mult: float = 1.0,
    act_weight_decay_mult: float = 1.0,
    bias_weight_decay: bool = True,
) -> list[dict[str, Any]]:
    """Groups "weights", "biases" and "activation" (empty ones left out). Each records its
    ``base_lr`` (lr times its multiplier), which the schedule scales every step."""
    act_ids = {id(p) for p in activation_parameters(model)}
    groups: dict[str, dict[str, Any]] = {
        "weights": {"params": [], "lr": lr, "weight_decay": weight_decay},
        "biases": {
            "params": [],
            "lr": lr,
            "weight_decay": weight_decay if bias_weight_decay else 0.0,
        },
        "activation": {
            "params": [],
            "lr": lr * act_lr_mult,
            "weight_decay": weight_decay * act_weight_decay_mult,
        },
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in act_ids:
            key = "activation"
        elif name == "bias" or name.endswith(".bias"):
            key = "biases"
        else:
            key = "weights"
        groups[key]["params"].append(param)
    return [
        {"name": key, "base_lr": group["lr"], **group}
        for key, group in groups.items()
        if group["params"]
    ]


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``cfg`` is the optimizer config group: name, lr, group policy and the class's own keys."""
    cls = _choose("optimizer", cfg["name"], OPTIMIZERS)
    policy = {k: cfg[k] for k in GROUP_KEYS if k in cfg and k != "name"}
    extra = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}
    extra = {k: v for k, v in extra.items() if k not in GROUP_KEYS}
    return cls(param_groups(model, **policy), **extra)


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier


# ---------------------------------------------------------------------------------------------
# Schedules: (options, steps_per_epoch, total_steps) -> step -> multiplier of the base lr.
# ``step`` counts the optimizer steps already taken (0 for the first update).


def _constant(steps_per_epoch: int, total_steps: int) -> Schedule:
    return lambda step: 1.0


def _multistep(
    steps_per_epoch: int, total_steps: int, *, milestones: list[float], gamma: float, unit: str
) -> Schedule:
    """x gamma at each milestone, as Caffe's multistep (Caffe counts iterations done)."""
    scale = steps_per_epoch if unit == "epochs" else 1
    bounds = sorted(round(m * scale) for m in milestones)
    return lambda step: gamma ** sum(step >= b for b in bounds)


def _cosine(steps_per_epoch: int, total_steps: int, *, final_lr_mult: float) -> Schedule:
    """Half a cosine from 1 to ``final_lr_mult`` over the whole run."""

    def multiplier(step: int) -> float:
        progress = min(step / max(total_steps, 1), 1.0)
        return final_lr_mult + (1 - final_lr_mult) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def _exponential(
    steps_per_epoch: int, total_steps: int, *, gamma: float, unit: str, start: int
) -> Schedule:
    """x gamma at the end of every epoch (or step) numbered ``start`` or later, counting
    from 1: char-rnn's ``learning_rate_decay`` 0.97 after ``learning_rate_decay_after`` 10
    is ``gamma=0.97, unit=epochs, start=10``."""
    size = steps_per_epoch if unit == "epochs" else 1
    return lambda step: gamma ** max(0, step // size - start + 1)


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": _constant,
    "multistep": _multistep,
    "cosine": _cosine,
    "exponential": _exponential,
}


def build_schedule(cfg: Mapping[str, Any], *, steps_per_epoch: int, total_steps: int) -> Schedule:
    """``cfg`` is the schedule config group: its name and that schedule's keys."""
    make = _choose("schedule", cfg["name"], SCHEDULES)
    options = {k: v for k, v in cfg.items() if k != "name"}
    return make(steps_per_epoch, total_steps, **options)

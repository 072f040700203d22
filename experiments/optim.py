"""Optimizers with the studies' parameter groups, and learning-rate schedules as functions.

Parameter groups follow Caffe's per-blob ``param { lr_mult decay_mult }``: every parameter has
a role (``weight``, ``bias`` or ``activation``: PReLU slopes, MPELU alpha/beta) and, when it
belongs to a weight layer of ``model.weight_layers()`` or to the unit after one, that layer.
``optimizer.multipliers`` is a list of rules, each naming a role and/or a layer and setting
``lr_mult`` and/or ``decay_mult``; for every parameter the last rule that matches it and sets
a key wins, as each Caffe blob has one lr_mult and one decay_mult (default 1 and 1). The older
keys are shortcuts for the first rules of that list: ``act_lr_mult`` / ``act_weight_decay_mult``
are ``{role: activation, lr_mult: ..., decay_mult: ...}`` and ``bias_weight_decay: false`` is
``{role: bias, decay_mult: 0}``. A schedule is a pure function ``step -> lr multiplier``, so
resuming needs only the step and there is no scheduler state.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from activations import activation_parameters
from activations.registry import Registry

#: optimizer name -> torch class; every config key besides GROUP_KEYS is passed to it (the
#: parameter groups come from param_groups).
OPTIMIZERS: Registry = Registry(
    "optimizer",
    fixed=("params",),
    builders={
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    },
)
#: optimizer config keys that shape the parameter groups rather than the torch optimizer.
GROUP_KEYS = (
    "name",
    "lr",
    "weight_decay",
    "act_lr_mult",
    "act_weight_decay_mult",
    "bias_weight_decay",
    "multipliers",
)
#: parameter roles a multiplier rule can name, in the order their groups are listed.
ROLES = ("weight", "bias", "activation")
#: a rule's ``layer`` that names the last weight layer (NIN's cccp6, a plain net's fc3).
CLASSIFIER = "classifier"

Schedule = Callable[[int], float]


@dataclass(frozen=True)
class Slot:
    """Where a parameter sits: its role, and its weight layer (index and module name) if any."""

    role: str
    layer: int | None = None
    layer_name: str | None = None


def parameter_slots(model: nn.Module) -> dict[int, Slot]:
    """id(parameter) -> Slot for every trainable parameter of ``model``.

    A weight layer's weight and bias, and the parameters of the unit that follows it, carry
    that layer's index in ``model.weight_layers()`` (models without one: no layers)."""
    module_names = {id(m): n for n, m in model.named_modules()}
    slots: dict[int, Slot] = {}
    pairs = model.weight_layers() if hasattr(model, "weight_layers") else []
    for index, (layer, unit) in enumerate(pairs):
        where = {"layer": index, "layer_name": module_names.get(id(layer))}
        for name, param in layer.named_parameters(recurse=False):
            slots[id(param)] = Slot("bias" if name == "bias" else "weight", **where)
        if unit is not None:
            for param in unit.parameters():
                slots[id(param)] = Slot("activation", **where)
    act_ids = {id(p) for p in activation_parameters(model)}
    for name, param in model.named_parameters():
        if id(param) not in slots:
            role = (
                "activation"
                if id(param) in act_ids
                else "bias"
                if name == "bias" or name.endswith(".bias")
                else "weight"
            )
            slots[id(param)] = Slot(role)
    return slots


def shortcut_rules(
    act_lr_mult: float = 1.0, act_weight_decay_mult: float = 1.0, bias_weight_decay: bool = True
) -> list[dict[str, Any]]:
    """The multiplier rules the older optimizer keys stand for (before any explicit rule)."""
    rules: list[dict[str, Any]] = [
        {"role": "activation", "lr_mult": act_lr_mult, "decay_mult": act_weight_decay_mult}
    ]
    if not bias_weight_decay:
        rules.append({"role": "bias", "decay_mult": 0.0})
    return rules


def _layer_matcher(
    spec: Any, where: str, slots: Mapping[int, Slot], count: int
) -> Callable[[Slot], bool]:
    """What a rule's ``layer`` selects: ``classifier`` (the last weight layer), an index into
    ``weight_layers()`` (negative from the end), or a pattern on the layer's module name."""
    names = sorted({s.layer_name for s in slots.values() if s.layer_name}, key=str)
    if spec is None:
        return lambda slot: True
    text = str(spec)
    if text == CLASSIFIER:
        text = str(count - 1)
    try:
        index = int(text)
    except ValueError:
        if not any(fnmatch.fnmatchcase(n, text) for n in names):
            raise ValueError(
                f"{where}.layer={spec!r} matches no weight layer; use {CLASSIFIER}, an index in "
                f"{-count}..{count - 1}, or a pattern on a module name ({', '.join(names)})"
            ) from None
        return lambda slot: (
            slot.layer_name is not None and fnmatch.fnmatchcase(slot.layer_name, text)
        )
    if not -count <= index < count:
        raise ValueError(
            f"{where}.layer={spec!r} is out of range; the model has {count} weight layers "
            f"(indices {-count}..{count - 1}, or {CLASSIFIER})"
        )
    index %= count
    return lambda slot: slot.layer == index


def resolve_multipliers(
    model: nn.Module, rules: Sequence[tuple[str, Mapping[str, Any]]]
) -> dict[int, tuple[float, float]]:
    """id(parameter) -> (lr_mult, decay_mult) after applying ``rules`` in order; each rule
    comes with the config key that set it, for error messages."""
    slots = parameter_slots(model)
    count = len(model.weight_layers()) if hasattr(model, "weight_layers") else 0
    mults = {pid: {"lr_mult": 1.0, "decay_mult": 1.0} for pid in slots}
    for where, rule in rules:
        unknown = set(rule) - {"role", "layer", "lr_mult", "decay_mult"}
        if unknown:
            raise ValueError(
                f"{where} has unknown key {sorted(unknown)[0]!r}; "
                "valid: role, layer, lr_mult, decay_mult"
            )
        role = rule.get("role")
        if role is not None and role not in ROLES:
            raise ValueError(f"{where}.role={role!r}; choose from: {', '.join(ROLES)}")
        in_layer = _layer_matcher(rule.get("layer"), where, slots, count)
        for pid, slot in slots.items():
            if (role is None or slot.role == role) and in_layer(slot):
                for key in ("lr_mult", "decay_mult"):
                    if rule.get(key) is not None:
                        mults[pid][key] = float(rule[key])
    return {pid: (m["lr_mult"], m["decay_mult"]) for pid, m in mults.items()}


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    act_lr_mult: float = 1.0,
    act_weight_decay_mult: float = 1.0,
    bias_weight_decay: bool = True,
    multipliers: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One group per (role, lr_mult, decay_mult), parameters in model order.

    A group is named by its role ("weights", "biases", "activation") when its role has one
    group, else by role and multipliers. Each records ``base_lr`` (lr x lr_mult, which the
    schedule scales every step), its multipliers and the module names of its layers. The first
    group has lr_mult 1 when any group does, so ``param_groups[0]["lr"]`` is the base rate."""
    shortcuts = shortcut_rules(act_lr_mult, act_weight_decay_mult, bias_weight_decay)
    rules = [("optimizer (act_*_mult, bias_weight_decay)", rule) for rule in shortcuts]
    rules += [(f"optimizer.multipliers[{i}]", rule) for i, rule in enumerate(multipliers)]
    mults = resolve_multipliers(model, rules)
    slots = parameter_slots(model)
    groups: dict[tuple[str, float, float], dict[str, Any]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        slot = slots[id(param)]
        lr_mult, decay_mult = mults[id(param)]
        group = groups.setdefault(
            (slot.role, lr_mult, decay_mult),
            {
                "role": slot.role,
                "lr_mult": lr_mult,
                "decay_mult": decay_mult,
                "lr": lr * lr_mult,
                "weight_decay": weight_decay * decay_mult,
                "layers": [],
                "params": [],
            },
        )
        group["params"].append(param)
        if slot.layer_name is not None and slot.layer_name not in group["layers"]:
            group["layers"].append(slot.layer_name)
    plural = {"weight": "weights", "bias": "biases", "activation": "activation"}
    per_role = [key[0] for key in groups]
    out = []
    for (role, lr_mult, decay_mult), group in sorted(
        groups.items(), key=lambda kv: (ROLES.index(kv[0][0]), kv[0][1] != 1.0)
    ):
        name = plural[role]
        if per_role.count(role) > 1:
            name += f" lr x{lr_mult:g} decay x{decay_mult:g}"
        out.append({"name": name, "base_lr": group["lr"], **group})
    out.sort(key=lambda g: g["lr_mult"] != 1.0)  # stable: role order kept otherwise
    return out


def describe_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The effective groups for summary.json: role, layers, base lr, weight decay, size."""
    return [
        {
            "name": g["name"],
            "role": g["role"],
            "layers": list(g["layers"]),
            "lr": g["base_lr"],
            "lr_mult": g["lr_mult"],
            "weight_decay": g["weight_decay"],
            "decay_mult": g["decay_mult"],
            "num_params": sum(p.numel() for p in g["params"]),
        }
        for g in optimizer.param_groups
    ]


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``cfg`` is the optimizer config group: name, lr, group policy and the class's own keys."""
    cls = OPTIMIZERS.get(cfg["name"])
    policy = {k: cfg[k] for k in GROUP_KEYS if k in cfg and k != "name"}
    extra = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}
    extra = {k: v for k, v in extra.items() if k not in GROUP_KEYS}
    return cls(param_groups(model, **policy), **extra)


def clip_gradients(
    params: Sequence[nn.Parameter], value: float | None, norm: float | None, measure: bool
) -> torch.Tensor | None:
    """Clip gradients by ``value`` then by total ``norm`` (either may be None); return their
    total norm (before norm clipping) when clipped by norm or ``measure``d, as a device
    tensor (no sync)."""
    if value is not None:
        torch.nn.utils.clip_grad_value_(params, value)
    if norm is not None:
        return torch.nn.utils.clip_grad_norm_(params, norm)
    if measure:
        return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    return None


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


#: schedule name -> maker; the run supplies the epoch length and the step budget.
SCHEDULES: Registry = Registry(
    "schedule",
    fixed=("steps_per_epoch", "total_steps"),
    builders={
        "constant": _constant,
        "multistep": _multistep,
        "cosine": _cosine,
        "exponential": _exponential,
    },
)


def build_schedule(cfg: Mapping[str, Any], *, steps_per_epoch: int, total_steps: int) -> Schedule:
    """``cfg`` is the schedule config group: its name and that schedule's keys."""
    make = SCHEDULES.get(cfg["name"])
    options = {k: v for k, v in cfg.items() if k != "name"}
    return make(steps_per_epoch, total_steps, **options)

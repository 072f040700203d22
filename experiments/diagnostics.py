"""Per-layer diagnostics: what each activation outputs and how large each layer's gradient is.

Saturation, dead rectifiers, bias shift and vanishing or exploding gradients are the effects the
studied papers argue about; this module measures them on one fixed batch (the task's
``train_batch(0)`` through its own loss, see ``task_loss``) so that values at different steps
describe the same inputs. For every weight layer of ``model.weight_layers()``
(numbered from 1 in forward order, the ``layer`` column of diagnostics.csv) it records

- ``zero_fraction``: fraction of the following unit's outputs that are exactly zero (sparsity),
- ``dead_units``: fraction of that unit's channels that are never positive over the batch,
- ``mean`` and ``std`` of the unit's outputs (the bias shift ELU-type units remove),
- ``grad_norm``: the L2 norm of the loss gradient with respect to the layer's weight.

The first four come from forward hooks on the activation modules (a unit called several times
in one pass, as a GRU's candidate unit is at every time step, is accumulated over its calls; a
unit shared by several weight layers is reported once, at the first). Gradients come from
``torch.autograd.grad`` with respect to the weights: it hands them back without touching any
``.grad``, so there is nothing to zero or restore afterwards.

The measurement must not change training. It runs the model in eval mode (dropout off, RReLU
at its mean slope, BatchNorm on its running statistics, which train mode would also update): the
statistics are then a deterministic function of the weights, and differences between steps come
from training, not from dropout masks. The global random generators are saved and restored
around it, hooks exist only while it runs, and every module's train/eval flag is put back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from activations import Activation
from experiments.modes import in_mode
from experiments.task import Task

#: diagnostics.csv metric names, as experiments/report/figures.py labels them.
METRICS = ("zero_fraction", "dead_units", "mean", "std", "grad_norm")

Row = tuple[int, str, float]


@dataclass
class _OutputStats:
    """Running sums over every call of one unit, kept on the device (read back once)."""

    channel_dim: int
    count: int = 0
    zeros: torch.Tensor | None = None
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None
    alive: torch.Tensor | None = field(default=None, repr=False)

    @torch.no_grad()
    def add(self, out: torch.Tensor) -> None:
        x = out.detach().double()
        channels = x.movedim(self.channel_dim, -1).reshape(-1, x.shape[self.channel_dim])
        batch = (
            (x == 0).sum(),
            x.sum(),
            x.square().sum(),
            (channels > 0).any(dim=0),
        )
        if self.zeros is None:
            self.zeros, self.total, self.squares, self.alive = batch
        else:
            self.zeros += batch[0]
            self.total += batch[1]
            self.squares += batch[2]
            self.alive |= batch[3]
        self.count += x.numel()

    def values(self) -> list[tuple[str, torch.Tensor]]:
        if self.zeros is None:
            return []
        mean = self.total / self.count
        variance = (self.squares / self.count - mean.square()).clamp_min(0)
        return [
            ("zero_fraction", self.zeros / self.count),
            ("dead_units", 1 - self.alive.double().mean()),
            ("mean", mean),
            ("std", variance.sqrt()),
        ]


@contextlib.contextmanager
def _isolated(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode and forked random generators for a block; both restored afterwards."""
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), in_mode(model, training=False):
        yield


def measure(model: nn.Module, loss_of: Callable[[nn.Module], torch.Tensor]) -> list[Row]:
    """(layer, metric, value) rows for ``model`` (which must have ``weight_layers()``), from
    one forward and backward pass of ``loss_of(model)``; see the module docstring."""
    pairs = model.weight_layers()
    weights = [layer.weight for layer, _ in pairs]
    units: dict[int, tuple[int, Activation]] = {}  # id -> (layer number, unit), first owner
    for number, (_, unit) in enumerate(pairs, start=1):
        if unit is not None and id(unit) not in units:
            units[id(unit)] = (number, unit)
    stats = {key: _OutputStats(unit.channel_dim) for key, (_, unit) in units.items()}
    handles = [
        unit.register_forward_hook(lambda _m, _i, out, s=stats[key]: s.add(out))
        for key, (_, unit) in units.items()
    ]
    device = weights[0].device
    try:
        with _isolated(model, device), torch.enable_grad():
            loss = loss_of(model)
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    named: list[tuple[int, str, torch.Tensor]] = []
    for key, (number, _) in units.items():
        named += [(number, metric, value) for metric, value in stats[key].values()]
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
    named += [
        (number, "grad_norm", nan if g is None else g.detach().double().norm())
        for number, g in enumerate(grads, start=1)
    ]
    named.sort(key=lambda row: (row[0], METRICS.index(row[1])))
    values = torch.stack([value.to(device) for _, _, value in named]).tolist()  # one sync
    return [(number, metric, v) for (number, metric, _), v in zip(named, values, strict=True)]


def task_loss(task: Task) -> Callable[[nn.Module], torch.Tensor]:
    """The task's own training loss on its first training batch, ``train_batch(0)``.

    ``probe_batch()`` holds inputs only, while a gradient needs targets; ``train_batch(0)`` is
    the protocol's fixed (inputs, targets) batch (for text tasks its inputs are exactly
    ``probe_batch()``, and the targets are the next characters). The task's loss path is used
    as training uses it, at step 0 (a text task starts from a zero hidden state there); any
    state it carries (the text task's hidden state) is put back afterwards.
    """
    batch = task.train_batch(0)

    def loss_of(model: nn.Module) -> torch.Tensor:
        state = task.state_dict()
        try:
            return task.training_loss(model, batch, 0)
        finally:
            task.load_state_dict(state)

    return loss_of

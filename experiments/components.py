"""Config -> the things a run trains: task, model, optimizer and schedule.

Training (experiments.train, the Trainer) and sampling (experiments.sample) both rebuild a
model from a saved config; doing it here, once, keeps the two from drifting apart. Building is
seeded and ordered (task, then model, then init), because the init draws random numbers: the
same config gives the same weights.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import activations
from experiments.data import build_task
from experiments.denormals import flush_denormals
from experiments.heap import reuse_freed_memory
from experiments.inits import initialize
from experiments.models import build_model
from experiments.optim import Schedule, build_optimizer, build_schedule
from experiments.precision import precision_warning, resolve_precision
from experiments.task import Task

log = logging.getLogger("actlab")


@dataclass
class Components:
    """What one run trains: built from the config by ``build``."""

    task: Task
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    device: torch.device
    total_steps: int
    precision: str  # trainer.precision with ``auto`` resolved (experiments.precision)

    def autocast(self) -> torch.autocast:
        """The context that training and evaluation run under: bf16 autocast when the
        precision is bf16, else a disabled (no-op) autocast."""
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )


def options(node: DictConfig) -> dict[str, Any]:
    """A config group as plain keyword arguments (lists, not ListConfig)."""
    out = OmegaConf.to_container(node, resolve=True)
    assert isinstance(out, dict)
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously; a CPU never waits)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every global generator; deterministic mode also refuses nondeterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    # cuDNN autotuning: only CUDA convs read it; it picks kernels by timing, so not when
    # results must repeat exactly.
    torch.backends.cudnn.benchmark = not deterministic


def planned_steps(max_steps: int | None, max_epochs: float | None, steps_per_epoch: int) -> int:
    """The step budget: the smaller of max_steps and max_epochs (whichever are set)."""
    budgets = [] if max_steps is None else [max_steps]
    if max_epochs is not None:
        budgets.append(max(1, math.ceil(max_epochs * steps_per_epoch)))
    return min(budgets)


def build_task_of(cfg: DictConfig, device: torch.device) -> Task:
    """The dataset group's task, its batches drawn from ``cfg.seed``."""
    dataset = options(cfg.dataset)
    return build_task(
        dataset.pop("name"), device=device, seed=cfg.seed, data_dir=cfg.paths.data_dir, **dataset
    )


def build_model_of(cfg: DictConfig, task: Task) -> nn.Module:
    """The model group's architecture with the activation group's unit, sized for ``task``
    (not initialised, on the CPU)."""
    unit = options(cfg.activation)
    act = functools.partial(activations.build, unit.pop("name"), **unit)
    arch = options(cfg.model)
    return build_model(
        arch.pop("name"),
        act,
        num_outputs=task.num_outputs,
        in_channels=task.in_channels,
        **arch,
    )


def build(cfg: DictConfig) -> Components:
    """Task, model (initialised), optimizer and schedule for ``cfg``, seeded by ``cfg.seed``."""
    device = resolve_device(cfg.trainer.device)
    precision = resolve_precision(cfg.trainer.precision, device)
    warning = precision_warning(precision, device)
    if warning:
        log.warning(warning)
    activations.set_backend(cfg.trainer.activation_backend)  # null: env var or library default
    if not flush_denormals(cfg.trainer.flush_denormal) and cfg.trainer.flush_denormal:
        log.warning("trainer.flush_denormal=true: this CPU cannot flush denormals; ignored")
    reuse_freed_memory(cfg.trainer.reuse_freed_memory)
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    task = build_task_of(cfg, device)
    model = build_model_of(cfg, task).to(device)
    init = options(cfg.init)
    initialize(model, init.pop("name"), batches=lambda i: task.train_batch(i)[0], **init)
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    total = planned_steps(cfg.trainer.max_steps, cfg.trainer.max_epochs, task.steps_per_epoch)
    return Components(
        task=task,
        model=model,
        optimizer=build_optimizer(model, options(cfg.optimizer)),
        schedule=build_schedule(
            options(cfg.schedule), steps_per_epoch=task.steps_per_epoch, total_steps=total
        ),
        device=device,
        total_steps=total,
        precision=precision,
    )

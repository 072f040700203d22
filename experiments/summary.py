"""The record summary.json holds: what ran, where it stands and how it ended.

It sits beside experiments.rundir (which owns the file and writes it atomically) rather than in
the trainer, because readers (resume, sweeps, the report) depend on its keys as much as the
trainer does. The record is rewritten whole at every status change and validation, so a killed
run's summary.json always says how far it got.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

import activations
from experiments.components import Components
from experiments.optim import describe_groups

#: the config groups whose chosen name the summary repeats, so a report needs no config.
CHOSEN_GROUPS = ("activation", "model", "dataset", "init", "optimizer")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Versions and code identity for summary.json."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "versions": {
            "actlab": importlib.metadata.version("actlab"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
    }


def new_summary(cfg: DictConfig, parts: Components) -> dict[str, Any]:
    """The record of a run about to (re)start: status ``running``, nothing measured yet."""
    model, trainer = parts.model, cfg.trainer
    return {
        "status": "running",
        "experiment": cfg.experiment_name,
        "run_name": cfg.run_name,
        **{g: cfg[g].name for g in CHOSEN_GROUPS},
        "seed": cfg.seed,
        "metric": parts.task.metric,
        "step": 0,
        "total_steps": parts.total_steps,
        "steps_per_epoch": parts.task.steps_per_epoch,
        "epoch": 0.0,
        "stop_reason": None,
        "diverged_step": None,
        "error": None,
        "final": None,
        "best": None,
        "test": None,
        "train_time_s": 0.0,
        "train_cpu_s": 0.0,
        "wall_time_s": 0.0,
        "num_params": sum(p.numel() for p in model.parameters()),
        "num_activation_params": sum(p.numel() for p in activations.activation_parameters(model)),
        "param_groups": describe_groups(parts.optimizer),
        "device": str(parts.device),
        "device_name": (
            torch.cuda.get_device_name(parts.device)
            if parts.device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "threads": torch.get_num_threads(),
        "precision": parts.precision,
        "channels_last": trainer.channels_last,
        "compile": trainer.compile,
        "flush_denormal": trainer.flush_denormal,
        "reuse_freed_memory": trainer.reuse_freed_memory,
        "compile_s": None,
        "activation_backend": activations.get_backend(),
        **environment(),
        "data": parts.task.meta,
        "started_at": now(),
        "updated_at": None,
        "resumed_at_steps": [],
    }


def note_validation(summary: dict[str, Any], record: dict[str, float], metric: str) -> None:
    """``final`` is the latest validation result, ``best`` the lowest metric so far."""
    summary["final"] = record
    best = summary["best"]
    if best is None or record[metric] < best[metric]:
        summary["best"] = record


def note_resume(summary: dict[str, Any], before: dict[str, Any], step: int) -> None:
    """A resumed run keeps its first start time and lists every step it resumed at."""
    summary["started_at"] = before.get("started_at", summary["started_at"])
    summary["resumed_at_steps"] = [*before.get("resumed_at_steps", []), step]

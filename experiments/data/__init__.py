"""Datasets as Tasks (see experiments.task): image classification and character LM corpora.

A dataset builder is registered by name and called as
``builder(device=..., seed=..., data_dir=..., **dataset_config_options)`` returning a Task.
"""

from __future__ import annotations

from pathlib import Path

import torch

from activations.registry import Registry
from experiments.task import Task

#: the device, seed and data folder come from the run, not the dataset group.
DATASETS: Registry = Registry("dataset", fixed=("device", "seed", "data_dir"))
register_dataset = DATASETS.register


def build_task(
    name: str, *, device: torch.device, seed: int, data_dir: str | Path, **options: object
) -> Task:
    """Build dataset ``name`` as a Task; unknown options fail with the valid option names."""
    _load_all()
    return DATASETS.build(
        name,
        device=device,
        seed=seed,
        data_dir=Path(data_dir),
        **options,
    )


def _load_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")

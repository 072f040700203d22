"""The interface between a dataset and the shared trainer.

One trainer serves image classification and character language modelling; everything that
differs between them (batches, loss, evaluation metric, carried recurrent state) sits behind
this protocol. Batches are a pure function of (seed, step), so resuming needs only the step.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


class Task(Protocol):
    #: "error" for classifiers (fraction misclassified), "bpc" for language models.
    metric: str
    #: output units the model must produce (classes or vocabulary size).
    num_outputs: int
    #: input channels for images (3) or vocabulary size for one-hot text.
    in_channels: int
    #: batches per pass over the training split.
    steps_per_epoch: int
    #: provenance and sizes for summary.json: source, sha256, split sizes, baselines.
    meta: dict[str, Any]

    def train_batch(self, step: int) -> Any:
        """The training batch of global ``step``, on the task's device, same on every call:
        (inputs, targets), inputs first (LSUV init draws its batches from here)."""

    def training_loss(self, model: nn.Module, batch: Any, step: int) -> torch.Tensor:
        """Mean loss of one batch (nats); text tasks carry and detach hidden state here."""

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """{'loss': nats, <metric>: value} over the whole ``split`` ('val' or 'test')."""

    def probe_batch(self) -> torch.Tensor:
        """A fixed input batch for per-layer diagnostics (LSUV draws training batches)."""

    def sample_text(self, model: nn.Module, seed: int) -> str | None:
        """What the trained ``model`` writes, saved beside the run when training completes
        (language models), or None (classifiers): the trainer asks and never checks which."""

    def state_dict(self) -> dict[str, Any]:
        """Anything besides (seed, step) needed to resume exactly (e.g. carried hidden state)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

"""The training loss between two metrics rows, kept on the device, and divergence against it.

Reading a loss back from an accelerator waits for all queued work, so the loop only adds each
step's loss to device-side sums here and reads them once per metrics row. The first step's loss
is kept too: divergence is a loss some factor above where training started.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch


class LossWindow:
    """Sums of loss and gradient norm since the last ``take``; ``state`` goes in checkpoints
    (under the keys ``first_loss`` and ``window``), so a resumed run continues the same
    window and measures divergence against the same first loss."""

    def __init__(self, device: torch.device, divergence_factor: float | None) -> None:
        zero = functools.partial(torch.zeros, (), dtype=torch.float64, device=device)
        self.sums: dict[str, Any] = {"loss": zero(), "grad_norm": zero(), "count": 0}
        self.first_loss: torch.Tensor | float | None = None
        self.factor = divergence_factor

    @property
    def count(self) -> int:
        return self.sums["count"]

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        if self.first_loss is None:
            self.first_loss = loss.clone()
        self.sums["loss"] += loss
        if grad_norm is not None:
            self.sums["grad_norm"] += grad_norm
        self.sums["count"] += 1

    def take(self, grad_norm: bool) -> tuple[float, float | None]:
        """The window's mean loss (and mean gradient norm when ``grad_norm``), then empty it:
        the loop's only sync point."""
        count = self.sums["count"]
        loss = self.sums["loss"].item() / count
        norm = self.sums["grad_norm"].item() / count if grad_norm else None
        self.sums["loss"].zero_()
        self.sums["grad_norm"].zero_()
        self.sums["count"] = 0
        return loss, norm

    def diverged(self, mean: float) -> bool:
        """NaN/inf, or above ``divergence_factor`` times the first step's loss (``mean`` is a
        window's mean loss, or one step's loss with ``divergence_check: step``)."""
        if not math.isfinite(mean):
            return True
        if isinstance(self.first_loss, torch.Tensor):
            self.first_loss = self.first_loss.item()
        factor = self.factor
        return factor is not None and mean > factor * self.first_loss

    def state(self) -> dict[str, Any]:
        first = self.first_loss
        return {
            "first_loss": first.item() if isinstance(first, torch.Tensor) else first,
            "window": self.sums,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.first_loss = state["first_loss"]
        self.sums = state["window"]

"""How a run shows its progress: a tqdm bar on a terminal, else one log line per metrics row.

A bar in a log file is noise and a log line per row on a terminal scrolls the bar away, so
exactly one of the two is used, chosen by whether stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("actlab")


class Progress:
    """Progress of the run ``label`` towards ``total`` steps, from step ``initial``."""

    def __init__(self, label: str, total: int, initial: int, stack: contextlib.ExitStack) -> None:
        tty = sys.stderr.isatty()
        self.label, self.total = label, total
        self.bar = stack.enter_context(
            tqdm(
                total=total,
                initial=initial,
                desc=label,
                unit="step",
                dynamic_ncols=True,
                disable=not tty,
            )
        )
        if tty:
            stack.enter_context(logging_redirect_tqdm())

    def advance(self) -> None:
        self.bar.update(1)

    def show(self, step: int, epoch: float, loss: float, lr: float) -> None:
        """A metrics row's numbers: on the bar, or as a log line."""
        if self.bar.disable:
            log.info(
                "[%s] step %d/%d epoch %.2f loss %.4f lr %.3g",
                self.label,
                step,
                self.total,
                epoch,
                loss,
                lr,
            )
        else:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", refresh=False)

"""Train/eval mode for a block of code, restored module by module afterwards.

Evaluation, diagnostics, sampling and LSUV's calibration each need the model in one mode for a
while and must leave it as they found it. ``model.train(was_training)`` is not enough: a model
may be mixed (a frozen BatchNorm kept in eval inside a training net), so every module's own flag
is saved and put back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def in_mode(model: nn.Module, *, training: bool) -> Iterator[nn.Module]:
    """``with in_mode(model, training=False):`` evaluates; every module's flag comes back."""
    saved = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, flag in saved:
            module.training = flag

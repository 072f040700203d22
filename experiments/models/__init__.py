"""Architectures: one file each, registered by name, built with an activation factory.

An activation factory is ``functools.partial(activations.build, name, **params)``: called as
``act(num_channels, channel_dim=1)`` it returns a fresh unit, so models never switch on names.
Every model exposes ``weight_layers() -> list[tuple[nn.Module, Activation | None]]``: its conv /
linear layers in forward order, each with the activation that follows it (inits and
diagnostics use this).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from activations import Activation
from activations.registry import Registry

ActivationFactory = Callable[..., Activation]

#: the unit factory comes from the activation group, the sizes from the task.
MODELS: Registry = Registry("model", fixed=("act", "num_outputs", "in_channels"))
register_model = MODELS.register


def build_model(
    name: str, act: ActivationFactory, *, num_outputs: int, in_channels: int, **options: object
) -> nn.Module:
    """Build model ``name``; unknown options fail with the model's valid option names."""
    _load_all()
    return MODELS.build(
        name,
        act=act,
        num_outputs=num_outputs,
        in_channels=in_channels,
        **options,
    )


def _load_all() -> None:
    """Import the model modules so their @register_model lines run."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")

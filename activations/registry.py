"""Name -> activation constructor, with an error that lists what exists (unlike a bare KeyError)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from activations.base import Activation

_REGISTRY: dict[str, Callable[..., Activation]] = {}

T = TypeVar("T", bound=Callable[..., Activation])


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a unit buildable by ``name`` (lower case, unique)."""

    def deco(factory: T) -> T:
        key = name.lower()
        if key in _REGISTRY:
            raise ValueError(f"activation {key!r} is registered twice")
        _REGISTRY[key] = factory
        return factory

    return deco


def names() -> list[str]:
    """Registered activation names, sorted."""
    return sorted(_REGISTRY)


def _factory(name: str) -> Callable[..., Activation]:
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown activation {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[key]


def parameters_of(name: str) -> dict[str, object]:
    """The unit's own parameters and their defaults (num_channels/channel_dim excluded)."""
    sig = inspect.signature(_factory(name))
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name not in ("self", "num_channels", "channel_dim")
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def build(
    name: str, num_channels: int | None = None, channel_dim: int = 1, **params: object
) -> Activation:
    """Build a unit; a misspelt parameter fails with the unit's valid parameter names."""
    factory = _factory(name)
    allowed = parameters_of(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"activation {name!r} has no parameter {unknown[0]!r}; "
            f"valid: {', '.join(allowed) or '(none)'}"
        )
    return factory(num_channels=num_channels, channel_dim=channel_dim, **params)


def activation_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Learnable parameters of every activation inside ``model`` (for their own lr / decay)."""
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for module in model.modules():
        if isinstance(module, Activation):
            for p in module.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out

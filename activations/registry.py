"""Name -> builder tables, one type for the whole code base: units here, and in experiments the
models, datasets, inits, preprocessors, optimizers and schedules.

A registry turns a config's ``name`` into a builder and checks the config's other keys against
the builder's signature before calling it, so a misspelt name or key fails in one line that
names the bad value and the valid choices (a bare KeyError or TypeError names neither). As in
timm's layer factories, a builder may also be passed directly (a class or function) instead of
its name. It lives at the bottom, in the activation library, because that package must not
depend on experiments.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from torch import nn

from activations.base import Activation

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """A named table of builders of one ``kind`` ("activation", "model", ...), which appears in
    every error message. ``fixed`` are the keyword arguments the caller supplies itself (not
    config keys); ``case_sensitive=False`` stores and looks up names in lower case.
    ``builders`` registers a table given whole (builders defined elsewhere, such as torch's
    optimizers). ``key_noun`` is what errors call a config key ("option", or "parameter" for
    a unit, whose keys are parameters of its formula)."""

    def __init__(
        self,
        kind: str,
        fixed: tuple[str, ...] = (),
        case_sensitive: bool = True,
        builders: Mapping[str, F] | None = None,
        key_noun: str = "option",
    ) -> None:
        self.kind = kind
        self.key_noun = key_noun
        self.fixed = fixed
        self._key: Callable[[str], str] = str if case_sensitive else lambda n: str(n).lower()
        self._table: dict[str, Callable[..., Any]] = {}
        for name, builder in (builders or {}).items():
            self.register(name)(builder)

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: make a builder buildable by ``name`` (unique)."""

        def deco(builder: F) -> F:
            key = self._key(name)
            if key in self._table:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._table[key] = builder
            return builder

        return deco

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._table)

    def get(self, name: str | Callable[..., Any]) -> Callable[..., Any]:
        """The builder called ``name``; a builder passed instead of a name is returned as is."""
        if callable(name):
            return name
        key = self._key(name)
        if key not in self._table:
            choices = ", ".join(self.names())
            raise ValueError(f"unknown {self.kind} {name!r}; choose from: {choices}")
        return self._table[key]

    def parameters(self, name: str | Callable[..., Any]) -> dict[str, inspect.Parameter]:
        """The config keys a builder takes, as parameters annotated with their type hints
        (``Any`` where there is none or they cannot be resolved): what config validation
        checks a config group against before anything is built."""
        builder = self.get(name)
        try:
            hints = typing.get_type_hints(builder.__init__ if inspect.isclass(builder) else builder)
        except Exception:  # unresolvable annotations: fall back to no type checks
            hints = {}
        return {
            k: p.replace(annotation=hints.get(k, Any))
            for k, p in inspect.signature(builder).parameters.items()
            if k not in self.fixed and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def defaults(self, name: str | Callable[..., Any]) -> dict[str, Any]:
        """Config keys a builder accepts, with their defaults (what its YAML lists)."""
        return {k: p.default for k, p in self.parameters(name).items()}

    def build(self, name: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call the builder; config keys it does not take fail with the valid keys."""
        allowed = self.defaults(name)
        unknown = sorted(k for k in kwargs if k not in self.fixed and k not in allowed)
        if unknown:
            label = name if isinstance(name, str) else getattr(name, "__name__", repr(name))
            raise ValueError(
                f"{self.kind} {label!r} has no {self.key_noun} {unknown[0]!r}; "
                f"valid: {', '.join(allowed) or '(none)'}"
            )
        return self.get(name)(*args, **kwargs)


#: every unit of the library; ``num_channels`` and ``channel_dim`` come from the model.
ACTIVATIONS: Registry[Callable[..., Activation]] = Registry(
    "activation", fixed=("num_channels", "channel_dim"), case_sensitive=False, key_noun="parameter"
)
register = ACTIVATIONS.register
names = ACTIVATIONS.names
parameters_of = ACTIVATIONS.defaults


def build(
    name: str | Callable[..., Activation],
    num_channels: int | None = None,
    channel_dim: int = 1,
    **params: object,
) -> Activation:
    """Build a unit by name (or from its class); a misspelt parameter fails with the unit's
    valid parameter names."""
    return ACTIVATIONS.build(name, num_channels=num_channels, channel_dim=channel_dim, **params)


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

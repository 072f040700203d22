"""Name -> builder tables for models, datasets and inits, each failing with the valid choices."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """A named table of builders; ``kind`` appears in every error message ("model", ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(builder: F) -> F:
            if name in self._table:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._table[name] = builder
            return builder

        return deco

    def names(self) -> list[str]:
        return sorted(self._table)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._table:
            choices = ", ".join(self.names())
            raise ValueError(f"unknown {self.kind} {name!r}; choose from: {choices}")
        return self._table[name]

    def options(self, name: str, fixed: tuple[str, ...] = ()) -> dict[str, Any]:
        """Config keys a builder accepts with their defaults, minus those the caller supplies."""
        sig = inspect.signature(self.get(name))
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.name not in fixed and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def build(self, name: str, /, *args: Any, fixed: tuple[str, ...] = (), **kwargs: Any) -> Any:
        """Call the builder; config keys it does not take fail with the valid keys.

        ``fixed`` names keyword arguments the caller supplies itself (they are not config keys).
        """
        allowed = self.options(name, fixed)
        config_keys = {k: v for k, v in kwargs.items() if k not in fixed}
        unknown = sorted(set(config_keys) - set(allowed))
        if unknown:
            raise ValueError(
                f"{self.kind} {name!r} has no option {unknown[0]!r}; "
                f"valid: {', '.join(allowed) or '(none)'}"
            )
        return self.get(name)(*args, **kwargs)

"""One global switch that decides how the fused units (RReLU, MPELU, TLU, ELU, PReLU) run.

Backends:
  ``reference``  each unit's plain-autograd twin (torch.where/exp/tanh; autograd keeps what it
                 needs): the definition the fast paths are tested against.
  ``eager``      the fast paths (hand-written backward, only the input or the slope saved) with
                 their kernels run op by op.
  ``compiled``   the same fast paths with every kernel fused by ``torch.compile`` (C++/OpenMP
                 via gcc on CPU, Triton on CUDA), compiled lazily on first use with dynamic
                 shapes so one compile serves every batch and image size.
  ``auto``       (default) ``compiled`` for tensors of at least ``AUTO_MIN_NUMEL`` elements,
                 ``reference`` below.

Why ``auto`` is the default. On real feature maps (bench_activations, 128x192x32x32 on this
CPU) the compiled fast paths ran ~7-11x faster than the same kernels eager and ~3.5-5x faster than
the twins, and the one-off compile (~10-20 s cold per process, ~1 s per kernel once the
Inductor cache is warm) is repaid within a few dozen training steps. On small tensors the twin
is the fastest path (a GRU step of 50x128: twin ~0.12 ms, eager fast path ~0.24 ms, compiled
~0.2 ms), its extra saved tensors are small, and a compile would dominate unit tests and smoke
runs; so small tensors run the twin. The eager fast path is never the fastest: it is the
memory-lean fallback when the compiler is missing, and an explicit choice. Runs that want a
fixed path set one: ``set_backend(...)`` or ``ACTLAB_ACTIVATION_BACKEND=<name>``; an explicit
``set_backend`` wins over the variable.

If ``torch.compile`` is unavailable or fails, kernels that would have been compiled run eagerly
for the rest of the process, after one warning; the call that failed is rerun eagerly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

BACKENDS = ("auto", "compiled", "eager", "reference")
DEFAULT_BACKEND = "auto"
ENV_VAR = "ACTLAB_ACTIVATION_BACKEND"
#: below this many elements (4 MiB of float32) ``auto`` runs the twins. Compiled kernels win
#: from ~1e5 elements, but the threshold sits higher so tests and toy runs never compile, while
#: every conv map of the studies' nets at training batch sizes is above it (NIN's smallest,
#: 128x192x8x8, is 1.5M); per-timestep GRU tensors (batch x hidden) are far below.
AUTO_MIN_NUMEL = 1 << 20

_override: str | None = None
_compile_failed = False


def _checked(name: str, source: str) -> str:
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise ValueError(
            f"unknown activation backend {name!r} ({source}); valid: {', '.join(BACKENDS)}"
        )
    return key


def set_backend(name: str | None) -> None:
    """Choose the backend for the whole process; ``None`` returns to the env var / default."""
    global _override
    _override = None if name is None else _checked(name, "set_backend")


def get_backend() -> str:
    """The backend in force: ``set_backend``'s, else ``$ACTLAB_ACTIVATION_BACKEND``, else auto."""
    if _override is not None:
        return _override
    env = os.environ.get(ENV_VAR)
    return _checked(env, f"${ENV_VAR}") if env else DEFAULT_BACKEND


@contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run a block under backend ``name`` and restore the previous choice afterwards."""
    global _override
    previous = _override
    set_backend(name)
    try:
        yield
    finally:
        _override = previous


def path_for(numel: int, twin_cost: int = 1) -> str:
    """How a fused unit runs on a tensor of ``numel`` elements now: reference, eager or compiled.

    ``twin_cost`` > 1 moves ``auto``'s threshold down by that factor for a unit whose twin is
    that much dearer than the others' (RReLU's hashes its draws in a dozen eager int32 ops)."""
    backend = get_backend()
    if backend == "auto":
        backend = "compiled" if numel * twin_cost >= AUTO_MIN_NUMEL else "reference"
    if backend == "compiled" and _compile_failed:
        return "eager"
    return backend


class Kernel:
    """A pure tensor function that runs eagerly or through ``torch.compile``, per the switch.

    The first positional argument decides (its size, for ``auto``, weighted by the unit's
    ``twin_cost`` as in :func:`path_for`, so that the kernel runs compiled exactly when its unit
    chose the fast path over the twin). Inside a region that is itself being compiled (the
    trainer compiling a whole model) the plain function is traced instead, so the outer compile
    fuses it with its neighbours.
    """

    def __init__(self, fn: Callable[..., Any], twin_cost: int = 1) -> None:
        self.fn = fn
        self.twin_cost = twin_cost
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._compiled: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        if torch.compiler.is_compiling() or path_for(args[0].numel(), self.twin_cost) != "compiled":
            return self.fn(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=True, fullgraph=True)
        try:
            return self._compiled(*args)
        except Exception as err:
            out = self.fn(*args)  # a genuine input error raises here, from the plain code
            _give_up_compiling(self.__name__, err)
            return out


def _give_up_compiling(name: str, err: Exception) -> None:
    """The compiler is missing or broken: say so once, then run every kernel eagerly."""
    global _compile_failed
    _compile_failed = True
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    warnings.warn(
        f"torch.compile failed for activation kernel {name} ({type(err).__name__}: "
        f"{first_line}); activation kernels run eagerly from now on",
        RuntimeWarning,
        stacklevel=3,
    )


def kernel(fn: Callable[..., Any] | None = None, *, twin_cost: int = 1) -> Any:
    """Decorator: make ``fn`` a :class:`Kernel`; ``@kernel(twin_cost=n)`` for a unit whose
    twin is n times dearer (see :func:`path_for`)."""
    if fn is None:
        return lambda f: Kernel(f, twin_cost)
    return Kernel(fn, twin_cost)

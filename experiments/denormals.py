"""Flush subnormal floats to zero on every CPU thread torch computes on, not just the caller's.

``torch.set_flush_denormal`` sets the FTZ/DAZ bits of the calling thread only, and OpenMP's
worker threads keep the bits they were started with. With two threads the main thread then
runs its half of a convolution fast and waits for the worker, which still crawls through
subnormal gradients: NIN with ELU trained at 77 img/s with or without the flag, against 145
for ReLU (scripts/bench_train.py, 2 threads). So the setting is also run inside one OpenMP
parallel region of the team size torch uses, through libgomp's ``GOMP_parallel`` entry point
(which LLVM's and Intel's OpenMP runtimes also export). Threads started later inherit the
setting from the thread that starts them.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_RUNTIMES = ("libgomp", "libiomp", "libomp")
_Region = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.cache
def _openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime already loaded into this process (by torch), if it can be found."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return None
    for line in maps.read_text().splitlines():
        path = line.split()[-1]
        if any(Path(path).name.startswith(name) for name in _RUNTIMES):
            try:
                runtime = ctypes.CDLL(path)
                # GOMP_parallel(void (*fn)(void *), void *data, unsigned threads, unsigned flags)
                fn = runtime.GOMP_parallel
                fn.argtypes = [_Region, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            except (OSError, AttributeError):
                continue
            return runtime
    return None


def flush_denormals(on: bool) -> bool:
    """Set flush-to-zero on the calling thread and every OpenMP worker; False if the CPU can't.

    Where no OpenMP runtime can be reached (not Linux, another threading backend) only the
    calling thread is set, as ``torch.set_flush_denormal`` does, and a debug line says so.
    """
    supported = torch.set_flush_denormal(on)
    runtime = _openmp()
    if runtime is None:
        log.debug("no OpenMP runtime found: flush_denormal=%s set on the calling thread only", on)
        return supported

    @_Region
    def each_thread(_: int | None) -> None:
        torch.set_flush_denormal(on)

    runtime.GOMP_parallel(each_thread, None, torch.get_num_threads(), 0)
    return supported

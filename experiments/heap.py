"""Keep freed memory in the process, so that a step's large tensors land in pages already mapped.

glibc's malloc serves every block above its mmap threshold (32 MiB at most; a NIN batch's
feature maps are 25-100 MiB) with a fresh ``mmap`` and hands it back with ``munmap`` when freed.
A training step frees and reallocates the same activation-sized tensors every time, so each step
touches new pages, and the kernel faults and zero-fills every 4 KiB of them before a kernel can
write: on this project's 2-core CPU, ``x + 1`` on a 25.2M-element bf16 map took 24.8 ms into
fresh pages against 7.1 ms into reused ones, and a bf16 NIN bench spent 43 of 262 CPU seconds
in the kernel (``sys``), 2 once the memory was kept (scripts/bench_train.py, README
Performance). ``M_MMAP_MAX = 0`` makes malloc take large blocks from its heap instead, and a
trim threshold of 2 GiB (the largest ``mallopt``'s int takes) keeps what is freed there for the
next step.

The price: the process holds on to its peak memory until it exits instead of returning freed
blocks to the system. Where ``mallopt`` does not exist (not glibc: macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h) and glibc's defaults for them
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_KEPT_TRIM = 2**31 - 1

_kept = False


@functools.cache
def _mallopt() -> ctypes._CFuncPtr | None:
    """glibc's ``mallopt``, if this process's C library has one."""
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def reuse_freed_memory(on: bool) -> bool:
    """Keep freed blocks for reuse (``on``) or restore glibc's defaults after an earlier call;
    True if the C library took the setting. A process that never asked is left untouched."""
    global _kept
    mallopt = _mallopt()
    if mallopt is None:
        log.debug("no mallopt in this C library: reuse_freed_memory=%s has no effect", on)
        return False
    if not on and not _kept:
        return True
    trim = _KEPT_TRIM if on else _DEFAULT_TRIM
    mmap_max = 0 if on else _DEFAULT_MMAP_MAX
    taken = bool(mallopt(_M_TRIM_THRESHOLD, trim))
    taken = bool(mallopt(_M_MMAP_MAX, mmap_max)) and taken
    _kept = on and taken
    return taken

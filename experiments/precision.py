"""Whether ``trainer.precision=bf16`` runs natively here, the one-line warning when not, and
what ``trainer.precision=auto`` means on this machine.

bf16 autocast works on every CPU, but only CPUs with bf16 arithmetic make it fast: x86 with
AVX512-BF16 (``avx512_bf16``) or AMX (``amx_bf16``), Arm with the BF16 extension (``bf16``).
Elsewhere oneDNN emulates it and a bf16 step is slower than fp32, which a user should hear about
once, at the start. The flags come from /proc/cpuinfo (Linux); where it cannot be read, the
CPU is treated as not native, so the warning errs on the side of being shown.
"""

from __future__ import annotations

from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
#: cpuinfo flags that mean bf16 dot products in hardware (x86 AVX512-BF16, AMX; Arm BF16).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of /proc/cpuinfo (x86 ``flags``, Arm ``Features``); empty if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Does this CPU compute in bf16 natively (see module doc)?"""
    return bool(cpu_flags(cpuinfo) & BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on a CPU with native bf16 and fp32 everywhere else (CUDA included, so a
    CPU preset run on a GPU keeps its fp32 numbers); ``fp32`` and ``bf16`` are themselves."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and native_bf16() else "fp32"


def precision_warning(precision: str, device: torch.device) -> str | None:
    """The warning for ``precision`` on ``device``, or None when it runs natively there."""
    if precision != "bf16" or device.type != "cpu" or native_bf16():
        return None
    return (
        f"trainer.precision=bf16 on {device}: this CPU lacks native bf16 (avx512_bf16, AMX or "
        "Arm bf16), so autocast emulates it and trains slower than fp32; use fp32 here"
    )

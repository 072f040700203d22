"""trainer.reuse_freed_memory: a step's large tensors reuse freed pages instead of faulting in new
ones (experiments.heap). Checked in a child process, since the setting is process-wide."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import ctypes, resource
import torch
from experiments.heap import reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    )]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2

def faults_per_round(rounds=6):
    # each round makes two 64 MiB temporaries and frees them, as a training step does
    x, faults = torch.ones(16 << 20), []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        (x + 1) * 2
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults

def mapped_for_a_new_block():
    # bytes glibc mmaps for one live 1 GiB tensor: more than the rounds freed; never touched
    before = mallinfo2().hblkhd
    y = torch.empty(1 << 30, dtype=torch.uint8)
    return mallinfo2().hblkhd - before

print(*faults_per_round(), mapped_for_a_new_block())
assert reuse_freed_memory(True)
print(*faults_per_round())
assert reuse_freed_memory(False)
print(mapped_for_a_new_block())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults_only_while_on():
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, check=True
    )
    default, kept, restored = ([int(n) for n in line.split()] for line in out.stdout.splitlines())
    pages = 2 * (64 << 20) // 4096  # 4 KiB pages of one round's temporaries
    assert min(default[:-1]) >= pages  # glibc's default: fresh mmaps, every page faulted in
    assert default[-1] >= 1 << 30
    # kept: after the first round mostly the freed blocks again (now and then one is a few
    # bytes short of an aligned request and a new one is taken: 0-2 of 5 rounds measured)
    assert sum(kept[1:]) < sum(default[1:-1]) / 4
    assert restored[0] >= 1 << 30  # off: glibc's defaults again

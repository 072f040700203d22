"""Forward+backward cost of every activation against F.relu, and of each fast path against its twin.

    python scripts/bench_activations.py                      # float32 (128, 192, 32, 32), compiled
    python scripts/bench_activations.py --dtype bfloat16 --channels-last   # as bf16 NIN sees them
    python scripts/bench_activations.py --size 2,4,3,3 --repeat 1 --backend eager   # smoke

Every unit runs at its defaults in training mode on a map with channel_dim=1, channel-first or
in ``channels_last`` memory format, in float32 or bfloat16 (its parameters stay float32, as
under autocast). A
timing is the best of ``--repeat`` calls of ``unit(x).backward(g)`` (x.grad cleared, so the
gradient is allocated every time as in training), after one warm-up call whose time (the
compile, for compiled kernels) is reported apart. Saved bytes are the distinct storages that
autograd keeps for backward, counted with ``torch.autograd.graph.saved_tensors_hooks``.
Freed memory is reused as the trainer's default does (``trainer.reuse_freed_memory``):
unmapped (``--unmap-freed-memory``), every call page-faults its outputs in again, which costs
more than the arithmetic. On a 128x192x32x32 fp32 channels_last map, 2 threads: F.relu 82 ms
and RReLU 216 (2.6x) unmapped, with 41 s of system time in a 42 s run; 21 and 35 ms (1.7x)
reused, 9 s in 23 s.
On a shared 2-core CPU the same number drifts up to +-30% between processes: compare ratios
within one run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import activations
from activations import Activation
from experiments.denormals import flush_denormals
from experiments.heap import reuse_freed_memory

Unit = Callable[[torch.Tensor], torch.Tensor]


def fwd_bwd_ms(fn: Unit, x: torch.Tensor, g: torch.Tensor, repeat: int) -> tuple[float, float]:
    """(first call, best of ``repeat`` later calls) of forward+backward, in milliseconds.

    The best, not the mean: other processes on a shared CPU only ever add time.
    """

    def once() -> float:
        x.grad = None
        start = time.perf_counter()
        fn(x).backward(g)
        return (time.perf_counter() - start) * 1e3

    first = once()
    return first, min(once() for _ in range(repeat))


def saved_bytes(fn: Unit, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for the backward of ``fn(x)``."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(storages.values())


def build(name: str, x: torch.Tensor) -> Activation:
    return activations.build(name, num_channels=x.shape[1], channel_dim=1).train()


def like(x: torch.Tensor, shape: list[int] | torch.Size) -> torch.Tensor:
    """A standard-normal tensor of ``shape`` in ``x``'s dtype and memory format."""
    t = torch.randn(shape).to(x.dtype)
    return t.to(memory_format=torch.channels_last) if is_channels_last(x) else t


def is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def out_grad(unit: Activation, x: torch.Tensor) -> torch.Tensor:
    shape = list(x.shape)
    shape[1] = unit.out_channels(shape[1])
    return like(x, shape)


def run(
    size: tuple[int, ...],
    repeat: int,
    backend: str,
    names: list[str],
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    reuse: bool = True,
    flush: bool = False,
) -> None:
    reuse_freed_memory(reuse)
    flush_denormals(flush)
    torch.manual_seed(0)
    x = torch.randn(size).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    input_bytes = x.numel() * x.element_size()
    layout = "channels_last" if is_channels_last(x) else "channel-first"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, "
        f"reuse_freed_memory {reuse}, flush_denormal {flush}; "
        f"{str(dtype).removeprefix('torch.')} {layout} input {tuple(size)}; fast paths on "
        f"backend '{backend}'; best of {repeat} forward+backward calls after one warm-up"
    )
    print("noise: other processes share this CPU; compare ratios within one run only")
    _, relu_ms = fwd_bwd_ms(F.relu, x, like(x, x.shape), repeat)

    print(f"\n{'unit':<10} {'ms':>8} {'x relu':>7}")
    print(f"{'F.relu':<10} {relu_ms:8.1f} {1.0:7.2f}")
    first_call: dict[str, float] = {}  # fast paths: their warm-up includes any compile
    with activations.use_backend(backend):
        for name in names:
            unit = build(name, x)
            first, ms = fwd_bwd_ms(unit, x, out_grad(unit, x), repeat)
            print(f"{name:<10} {ms:8.1f} {ms / relu_ms:7.2f}")
            if unit.fast_path:
                first_call[name] = first
    if not first_call:
        return

    print(
        f"\n{'fast path':<10} {'ms':>8} {'twin ms':>8} {'x twin':>7} {'x relu':>7} "
        f"{'saved MB':>9} {'twin MB':>8} {'saved/input':>12} {'twin/input':>11} {'1st call ms':>12}"
    )
    for name, first in first_call.items():
        unit = build(name, x)
        g = out_grad(unit, x)
        with activations.use_backend(backend):
            _, ms = fwd_bwd_ms(unit, x, g, repeat)
            mine = saved_bytes(unit, x)
        with activations.use_backend("reference"):
            _, twin_ms = fwd_bwd_ms(unit, x, g, repeat)
            twin = saved_bytes(unit, x)
        print(
            f"{name:<10} {ms:8.1f} {twin_ms:8.1f} {ms / twin_ms:7.2f} {ms / relu_ms:7.2f} "
            f"{mine / 2**20:9.1f} {twin / 2**20:8.1f} {mine / input_bytes:12.2f} "
            f"{twin / input_bytes:11.2f} {first:12.0f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--size", default="128,192,32,32", help="input shape N,C[,H,W...] (default %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per unit (best)")
    parser.add_argument(
        "--backend",
        default="compiled",
        choices=[b for b in activations.BACKENDS if b != "reference"],
        help="backend of the fast paths (their twins always run 'reference')",
    )
    parser.add_argument("--units", nargs="+", default=activations.names(), metavar="NAME")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument(
        "--channels-last", action="store_true", help="4-d input in channels_last memory format"
    )
    parser.add_argument(
        "--unmap-freed-memory",
        action="store_true",
        help="glibc's default: freed blocks go back to the OS, so every call page-faults",
    )
    parser.add_argument(
        "--flush-denormal", action="store_true", help="subnormals as zero on every thread"
    )
    args = parser.parse_args(argv)
    try:
        size = tuple(int(s) for s in args.size.split(","))
    except ValueError:
        parser.error(f"--size {args.size!r} is not a comma-separated list of integers")
    if len(size) < 2 or min(size) < 1:
        parser.error(f"--size {args.size!r} needs at least N,C, all positive")
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat} must be at least 1")
    unknown = sorted(set(args.units) - set(activations.names()))
    if unknown:
        parser.error(f"unknown unit {unknown[0]!r}; registered: {', '.join(activations.names())}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads {args.threads} must be at least 1")
        torch.set_num_threads(args.threads)
    run(
        size,
        args.repeat,
        args.backend,
        args.units,
        getattr(torch, args.dtype),
        args.channels_last,
        reuse=not args.unmap_freed_memory,
        flush=args.flush_denormal,
    )


if __name__ == "__main__":
    main()

"""Training throughput of CharGRU (tanh) relative to torch.nn.GRU, same device, same run.

Both models see the same one-hot input and have the same linear decoder around the recurrent
part; one step is forward + backward + RMSprop step (char-rnn's optimizer). Steps of the models
are interleaved and the median is kept, because timings on a shared CPU drift between processes
(docs/papers.md §9: up to +-30%), so only ratios within one run are meaningful.

    python scripts/bench_gru.py                 # hidden 128 and 512, 2 layers, batch 50, seq 50
    python scripts/bench_gru.py --smoke         # tiny sizes, seconds; checks the script runs

On a CPU shared with other jobs, two OpenMP threads spend most of a small step waiting at
barriers (10-20x slower); --threads 1 then gives steadier numbers.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import activations
from experiments.models.chargru import VARIANTS, CharGRU


class TorchGRULM(nn.Module):
    """nn.GRU with CharGRU's one-hot input and decoder, the baseline of the ratio."""

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.gru = nn.GRU(vocab_size, hidden_size, num_layers)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq, hidden = self.gru(F.one_hot(x, self.vocab_size).float(), hidden)
        return self.decoder(seq), hidden


def training_step(model: nn.Module, args: argparse.Namespace, device: torch.device) -> Callable:
    """A closure running one timed training step of ``model`` on fixed random characters."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(args.vocab, (args.seq, args.batch), generator=gen).to(device)
    y = torch.randint(args.vocab, (args.seq, args.batch), generator=gen).to(device)
    hidden = torch.zeros(args.layers, args.batch, args.hidden_size, device=device)
    opt = torch.optim.RMSprop(model.parameters(), lr=2e-3, alpha=0.95)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        logits, _ = model(x, hidden)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return step


def measure(args: argparse.Namespace, hidden_size: int, device: torch.device) -> dict[str, float]:
    """Characters per second of each model, median over interleaved steps."""
    args.hidden_size = hidden_size
    torch.manual_seed(0)
    tanh = functools.partial(activations.build, "tanh")
    models: dict[str, nn.Module] = {"nn.GRU": TorchGRULM(args.vocab, hidden_size, args.layers)}
    for variant in args.variants:
        models[variant] = CharGRU(
            tanh, args.vocab, args.vocab, hidden_size, args.layers, variant=variant
        )
    steps = {name: training_step(m.to(device), args, device) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for rep in range(args.warmup + args.steps):
        for name, step in steps.items():
            seconds = step()
            if rep >= args.warmup:
                times[name].append(seconds)
    chars = args.batch * args.seq
    return {name: chars / statistics.median(ts) for name, ts in times.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--vocab", type=int, default=100, help="one-hot width and output classes")
    p.add_argument("--steps", type=int, default=7, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's); 1 resists a busy CPU"
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.hidden, args.batch, args.seq, args.vocab, args.steps, args.warmup = [8], 3, 4, 11, 1, 1
    return args


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    thp = os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")
    print(
        f"CharGRU (tanh) vs torch.nn.GRU training throughput (forward + backward + RMSprop)\n"
        f"layers {args.layers}, batch {args.batch}, seq {args.seq}, vocab {args.vocab}, "
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"THP_MEM_ALLOC_ENABLE={thp}, median of {args.steps} steps after {args.warmup} warm-up"
    )
    header = ["hidden", "nn.GRU chars/s"]
    for variant in args.variants:
        header += [f"{variant} chars/s", f"{variant} ratio"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    results = {}
    for hidden_size in args.hidden:
        rates = measure(args, hidden_size, device)
        row = [str(hidden_size), f"{rates['nn.GRU']:.0f}"]
        for variant in args.variants:
            row += [f"{rates[variant]:.0f}", f"{rates[variant] / rates['nn.GRU']:.2f}"]
        print("| " + " | ".join(row) + " |", flush=True)
        results[hidden_size] = rates
    return results


if __name__ == "__main__":
    main()

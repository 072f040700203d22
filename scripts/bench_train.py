"""Training throughput of the product's step loop against a plain PyTorch loop.

For each model (NIN, PlainNet-30, CharGRU) and activation it times ``Trainer.train_step``, the
trainer's own step (batch from the task, loss, backward, clipping, optimizer), as composed
from configs/ by ``experiments.components.build``, under each speed option: eager fp32 NCHW,
channels_last, torch.compile, both, and bf16 (``trainer.precision=bf16`` autocast, eager, with
channels_last for the image models; channels_last does not apply to the GRU). Image models
are also timed in a reference loop written here the way a tutorial would: a torchvision
DataLoader over the same uint8 images with per-sample ``transforms.v2`` RandomCrop(32, padding=4)
and RandomHorizontalFlip, normalisation with the same statistics, eager, fp32, NCHW, with the
same model (relu) and SGD settings, never with flushed denormals, and in the same process, so
under the same allocator setting (``trainer.reuse_freed_memory``, on unless
``--unmap-freed-memory``; experiments.heap). The data column is the
task's ``train_batch`` time as a share of the eager step. Each timing runs ``--warmup``
untimed steps first (compiles happen there) and reports images (or characters) per second over
``--steps`` timed steps.

    python scripts/bench_train.py [--device cpu|cuda] [--threads N] [--steps 10] [--batch 128]
        [--models nin plainnet chargru] [--acts relu lrelu prelu rrelu elu mpelu tlu]
        [--options eager channels_last compile both bf16] [--flush-denormal] [--profile K]
        [--unmap-freed-memory] [--interleave] [--quick]

Ratios: ``xref`` is the best fp32 option over the reference loop, ``xrelu`` the best fp32
option over relu's best for the same model (tanh's for the GRU, its own unit), ``xrelu16``
the same for the bf16 column, ``xbf16`` the bf16 column over the best fp32 option. An option
that fails (a compiler error) is shown as ``fail`` and left out of the best. bf16 is only fast
where the CPU has native bf16 (the footer says; experiments/precision.py). ``--repeats R``
measures every cell R times, interleaved, and keeps each cell's best. ``--interleave`` instead
builds every unit's trainer for an option, steps them alternately ``--steps`` times and reports
each unit's median step: on a shared VM whose speed drifts within minutes, the ratios between
units then hold where best-of-rounds cells do not (no data column in that mode).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from activations import use_backend
from experiments.components import build
from experiments.data.images import derived_seed
from experiments.data.shapes import generate_shapes
from experiments.heap import reuse_freed_memory
from experiments.precision import CPUINFO, cpu_flags, native_bf16
from experiments.rundir import RunDir
from experiments.train import CONFIG_DIR
from experiments.trainer import Trainer

MODELS = ("nin", "plainnet", "chargru")
ACTS = ("relu", "lrelu", "prelu", "rrelu", "elu", "mpelu", "tlu")
#: option name -> (channels_last, compile, precision)
OPTIONS = {
    "eager": (False, False, "fp32"),
    "channels_last": (True, False, "fp32"),
    "compile": (False, True, "fp32"),
    "both": (True, True, "fp32"),
    "bf16": (True, False, "bf16"),
}
#: what a channels_last option means for the GRU, which has no conv maps
NCHW_TWIN = {"channels_last": "eager", "both": "compile"}
#: the unit each model's ``xrelu`` column divides by: the GRU's own candidate unit is tanh.
REFERENCE_UNIT = {"chargru": "tanh"}
#: --quick: tiny widths so every code path runs in seconds (no compile).
QUICK_MODEL = {
    "nin": ("model.widths=[8,8,8,8,8,8,8,8]",),
    "plainnet": ("model.depth=6", "model.widths=[4,8,8]", "model.stage_convs=[1,1]"),
    "chargru": ("model.hidden_size=8",),
}


@dataclass
class Row:
    model: str
    act: str
    unit: str  # "img/s" or "char/s"
    rates: dict[str, float] = field(default_factory=dict)
    data_share: float = float("nan")  # train_batch time / eager step time
    flops: float = float("nan")  # matmul + conv FLOPs per item (image or character) per step


def config(model: str, act: str, args: argparse.Namespace, *options: str) -> DictConfig:
    overrides = [f"model={model}", f"activation={act}", "trainer.threads=null", *options]
    overrides.append(f"trainer.device={args.device}")
    if model == "chargru":
        overrides += ["dataset=linux", f"paths.data_dir={args.data_dir}"]
        if args.quick:
            overrides += ["dataset.size_mb=0.05", "dataset.batch_size=4", "dataset.seq_len=8"]
        elif args.batch:
            overrides.append(f"dataset.batch_size={args.batch}")
    else:  # the studies' SGD, as the plain reference loop runs it
        size = 512 if args.quick else max(2000, 4 * (args.batch or 128))
        overrides += ["optimizer=sgd", f"dataset.train_size={size}", "dataset.test_size=100"]
        overrides.append(f"dataset.batch_size={8 if args.quick else args.batch or 128}")
    if args.quick:
        overrides += QUICK_MODEL[model]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=overrides)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[int], object], device: torch.device, warmup: int, steps: int) -> float:
    """Seconds per step over ``steps`` steps after ``warmup`` untimed ones."""
    for i in range(warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    sync(device)
    return (time.perf_counter() - start) / steps


def items_per_step(cfg: DictConfig) -> int:
    per = cfg.dataset.batch_size
    return per * cfg.dataset.seq_len if cfg.model.name == "chargru" else per


@contextlib.contextmanager
def training(cfg: DictConfig) -> Iterator[Trainer]:
    """The product's Trainer for ``cfg`` in a throwaway run directory, model in training mode."""
    parts = build(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(parts, cfg, RunDir(tmp))
        parts.model.train()
        yield trainer


def ours(cfg: DictConfig, args: argparse.Namespace) -> tuple[float, float]:
    """(items/s of Trainer.train_step, seconds per train_batch call); with ``--profile`` it
    also prints one more step's top ops."""
    with training(cfg) as trainer:
        parts = trainer.parts
        per_step = timed(trainer.train_step, parts.device, args.warmup, args.steps)
        if args.profile:
            print_profile(trainer.train_step, args.warmup + args.steps, parts.device, args.profile)
    data = timed(parts.task.train_batch, parts.device, 1, args.steps)
    return items_per_step(cfg) / per_step, data


def print_profile(
    step: Callable[[int], object], index: int, device: torch.device, rows: int
) -> None:
    """The ``rows`` ops with the most self time in one step (step ``index``)."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step(index)
        sync(device)
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=rows), flush=True)


def step_flops(cfg: DictConfig) -> float:
    """Matmul and convolution FLOPs of one training step per item, counted in an eager step."""
    # the plain kernels: torch.compile traces nothing under a dispatch mode, and a failed
    # compile would leave every fused unit eager for the rest of the process
    with (
        training(cfg) as trainer,
        use_backend("reference"),
        FlopCounterMode(display=False) as counter,
    ):
        trainer.train_step(0)
    return counter.get_total_flops() / items_per_step(cfg)


def matmul_peak(
    dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 10
) -> float:
    """GFLOP/s of an n x n matmul in ``dtype``, best of ``repeats`` after half a second of
    warm-up: the machine's reachable peak that a step's share is measured against. (With two
    warm-up products only, two runs of the same script measured bf16 at 798 and 2,058.)"""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    warm_until = time.perf_counter() + 0.5
    while time.perf_counter() < warm_until:
        a @ b
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


class CropFlipDataset(Dataset):
    """uint8 images through per-sample torchvision transforms, as a tutorial loop has them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std) -> None:
        self.images, self.labels = images, labels
        self.transform = v2.Compose(
            [
                v2.RandomCrop(32, padding=4),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean, std),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def reference(cfg: DictConfig, args: argparse.Namespace) -> float:
    """Images/s of the plain loop: DataLoader + per-sample transforms, eager fp32 NCHW."""
    parts = build(cfg)  # the same initialised model (channels_last off in cfg)
    model, device = parts.model, parts.device
    images, labels = generate_shapes(
        cfg.dataset.train_size, derived_seed(cfg.dataset.data_seed, "shapes-train")
    )
    stats = parts.task.preprocess
    loader = DataLoader(
        CropFlipDataset(images, labels, stats.mean, stats.std),
        batch_size=cfg.dataset.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=0,
        pin_memory=device.type == "cuda",
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum
    )
    batches = iter(loader)
    model.train()

    def step(_: int) -> None:
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return cfg.dataset.batch_size / timed(step, device, args.warmup, args.steps)


def in_turn(
    cfgs: dict[str, DictConfig], args: argparse.Namespace
) -> dict[str, tuple[float, float]]:
    """(items/s, seconds per train_batch) per unit: each unit's steps timed together, once per
    round (``--repeats``), keeping each unit's best round, so the unit that happens to run first
    (the process still warming up) is not penalised. A unit whose run fails (a compiler error)
    is a result too: NaN."""
    out: dict[str, tuple[float, float]] = {}
    for _, (act, cfg) in itertools.product(range(args.repeats), cfgs.items()):
        try:
            rate, data_s = ours(cfg, args)
        except Exception as err:
            print(f"  {cfg.model.name} {act}: failed: {str(err).splitlines()[0]}")
            out.setdefault(act, (math.nan, math.nan))
            continue
        if not rate <= out.get(act, (-math.inf,))[0]:  # NaN (failed) or a new best
            out[act] = (rate, data_s)
    return out


def interleaved(
    cfgs: dict[str, DictConfig], args: argparse.Namespace
) -> dict[str, tuple[float, float]]:
    """(items/s, NaN) per unit from the median of its ``--steps`` step times, the units taking
    one step each in turn. On a shared VM the machine's speed drifts by tens of percent within
    minutes; stepping the units alternately exposes them all to the same drift, where timing
    one unit's steps together lets a fast or slow minute land on one unit alone."""
    times: dict[str, list[float]] = {act: [] for act in cfgs}
    with contextlib.ExitStack() as stack:
        trainers = {act: stack.enter_context(training(cfg)) for act, cfg in cfgs.items()}
        for trainer in trainers.values():
            for i in range(args.warmup):
                trainer.train_step(i)
        for i in range(args.warmup, args.warmup + args.steps):
            for act, trainer in trainers.items():
                sync(trainer.parts.device)
                start = time.perf_counter()
                trainer.train_step(i)
                sync(trainer.parts.device)
                times[act].append(time.perf_counter() - start)
    return {
        act: (items_per_step(cfgs[act]) / statistics.median(t), math.nan)
        for act, t in times.items()
    }


def measure(args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    rows, references = [], {}
    options = {k: OPTIONS[k] for k in args.options if not (args.quick and OPTIONS[k][1])}
    # the GRU has no conv maps: a channels_last option is its NCHW twin there, bf16 runs NCHW
    gru_options: dict[str, tuple[bool, bool, str]] = {}
    for name, (_, compiled, precision) in options.items():
        gru_options.setdefault(NCHW_TWIN.get(name, name), (False, compiled, precision))
    for model in args.models:
        acts = [*args.acts, "tanh"] if model == "chargru" and "tanh" not in args.acts else args.acts
        base = config(model, "relu", args, "trainer.channels_last=false")
        flops = step_flops(base)
        print(f"{model}: {flops / 1e9:.3f} GFLOP per item per training step", flush=True)
        if model != "chargru":
            references[model] = reference(base, args)
            print(f"{model} reference loop: {references[model]:.1f} img/s", flush=True)
        model_rows = {
            act: Row(model, act, "char/s" if model == "chargru" else "img/s", flops=flops)
            for act in acts
        }
        for name, (channels_last, compiled, precision) in (
            gru_options if model == "chargru" else options
        ).items():
            cfgs = {
                act: config(
                    model,
                    act,
                    args,
                    f"trainer.channels_last={str(channels_last).lower()}",
                    f"trainer.compile={str(compiled).lower()}",
                    f"trainer.precision={precision}",
                    f"trainer.flush_denormal={str(args.flush_denormal).lower()}",
                    f"trainer.reuse_freed_memory={str(not args.unmap_freed_memory).lower()}",
                )
                for act in acts
            }
            measure_option = interleaved if args.interleave else in_turn
            measured = measure_option(cfgs, args)
            for act, (rate, data_s) in measured.items():
                row = model_rows[act]
                row.rates[name] = rate
                if name == "eager" and not math.isnan(data_s):
                    row.data_share = data_s * rate / items_per_step(cfgs[act])
                print(f"  {model} {act} {name}: {rate:.1f} {row.unit}", flush=True)
        rows += model_rows.values()
    return rows, references


def best(row: Row) -> float:
    """The fastest fp32 option that ran (NaN marks one that failed)."""
    fp32 = (v for k, v in row.rates.items() if OPTIONS[k][2] == "fp32" and not math.isnan(v))
    return max(fp32, default=math.nan)


def cell(rate: float) -> str:
    return "fail" if math.isnan(rate) else f"{rate:.0f}"


def ratio(value: float, reference: float) -> str:
    """value / reference to two places, or - where either is missing (NaN)."""
    out = value / reference
    return "-" if math.isnan(out) else f"{out:.2f}"


def gflops(value: float) -> str:
    """A peak in GFLOP/s for the printout: ``-`` when not measured (NaN), one decimal below 10
    (an emulated bf16 peak is about 1, which whole numbers would print as 0)."""
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def table(rows: list[Row], references: dict[str, float], peaks: dict[str, float]) -> str:
    names = list(OPTIONS)
    header = ["model", "act", "unit", *names, "ref", "xref", "xrelu", "xrelu16", "xbf16"]
    header += ["peak32", "peak16", "data %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    reference_rows = [r for r in rows if r.act == REFERENCE_UNIT.get(r.model, "relu")]
    best_relu = {r.model: best(r) for r in reference_rows}
    bf16_relu = {r.model: r.rates.get("bf16", math.nan) for r in reference_rows}
    for r in rows:
        top = best(r)
        ref = references.get(r.model)
        relu = best_relu.get(r.model)
        cells = [
            r.model,
            r.act,
            r.unit,
            *(cell(r.rates[n]) if n in r.rates else "-" for n in names),
            f"{ref:.0f}" if ref else "-",
            f"{top / ref:.2f}" if ref else "-",
            f"{top / relu:.2f}" if relu else "-",
            ratio(r.rates.get("bf16", math.nan), bf16_relu.get(r.model, math.nan)),
            f"{r.rates['bf16'] / top:.2f}" if "bf16" in r.rates else "-",
            ratio(top * r.flops / 1e9, peaks["fp32"]),  # matmul + conv GFLOP/s over the peak
            ratio(r.rates.get("bf16", math.nan) * r.flops / 1e9, peaks["bf16"]),
            f"{100 * r.data_share:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the CPU features that decide these numbers: vector width, bf16 dot products, AMX tiles
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_name() -> str:
    """The CPU's model name and its speed-relevant flags, for the footer."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        lines = []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags = [f for f in SPEED_FLAGS if f in cpu_flags()]
    return f"{model or platform.machine()} ({' '.join(flags) or 'flags unknown'})"


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda when one is there")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiles)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds over all units; each cell keeps its best"
    )
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: configs')")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--acts", nargs="+", default=list(ACTS))
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument(
        "--flush-denormal", action="store_true", help="trainer.flush_denormal for ours"
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="step the units alternately and report each one's median step (drift-robust)",
    )
    parser.add_argument(
        "--unmap-freed-memory",
        action="store_true",
        help="trainer.reuse_freed_memory=false for ours and the reference loop",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="K", help="print each step's K costliest ops"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 steps, no compile")
    parser.add_argument("--data-dir", default=None, help="corpus cache for the GRU")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = min(args.steps, 2), 1
    if args.threads:
        torch.set_num_threads(args.threads)
    # process-wide, so the reference loop runs under the same allocator setting as ours
    reuse_freed_memory(not args.unmap_freed_memory)
    device = torch.device(args.device)
    size = 256 if args.quick else 2048
    peaks = {"fp32": matmul_peak(torch.float32, device, size)}
    # only when asked for: without native bf16, products run at about 1.2 GFLOP/s (512^2, AVX2
    # EPYC) and timing the 2048^2 peak held an fp32 run up for over 7 minutes
    wants_bf16 = "bf16" in args.options
    peaks["bf16"] = matmul_peak(torch.bfloat16, device, size) if wants_bf16 else math.nan
    print(
        f"matmul peak {size}^2: fp32 {gflops(peaks['fp32'])} GFLOP/s, bf16 {gflops(peaks['bf16'])}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        args.data_dir = args.data_dir or os.path.join(tmp, "data")
        rows, references = measure(args)
    load = os.getloadavg()
    print(
        f"\n{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {cpu_name()}, "
        f"device {args.device}, threads {torch.get_num_threads()}, batch "
        f"{args.batch or 'config'}, steps {args.steps} (+{args.warmup} warm-up, "
        f"{'interleaved, median' if args.interleave else f'best of {args.repeats} rounds'}), "
        f"flush_denormal {args.flush_denormal}, reuse_freed_memory "
        f"{not args.unmap_freed_memory}, native bf16 {native_bf16()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, matmul peak GFLOP/s fp32 "
        f"{gflops(peaks['fp32'])} bf16 {gflops(peaks['bf16'])}"
    )
    print(table(rows, references, peaks))
    return rows


if __name__ == "__main__":
    main()

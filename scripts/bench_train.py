"""Training throughput of the product's step loop against a plain PyTorch loop.

For each model (NIN, PlainNet-30, CharGRU) and activation it times ``Trainer.train_step``, the
trainer's own step (batch from the task, loss, backward, clipping, optimizer), as composed
from configs/ by ``experiments.components.build``, under each speed option: eager fp32 NCHW,
channels_last, torch.compile, both, and bf16 (``trainer.precision=bf16`` autocast, eager, with
channels_last for the image models; channels_last does not apply to the GRU). Image models
are also timed in a reference loop written here the way a tutorial would: a torchvision
DataLoader over the same uint8 images with per-sample ``transforms.v2`` RandomCrop(32, padding=4)
and RandomHorizontalFlip, normalisation with the same statistics, eager, fp32, NCHW, with the
same model (relu) and SGD settings, never with flushed denormals. The data column is the
task's ``train_batch`` time as a share of the eager step. Each timing runs ``--warmup``
untimed steps first (compiles happen there) and reports images (or characters) per second over
``--steps`` timed steps.

    python scripts/bench_train.py [--device cpu|cuda] [--threads N] [--steps 10] [--batch 128]
        [--models nin plainnet chargru] [--acts relu elu prelu mpelu tlu]
        [--options eager channels_last compile both bf16] [--flush-denormal] [--quick]

Ratios: ``xref`` is the best fp32 option over the reference loop, ``xrelu`` the best fp32
option over relu's best for the same model (tanh's for the GRU, its own unit), ``xbf16`` the
bf16 column over the best fp32 option. An option that fails (a compiler error) is shown as
``fail`` and left out of the best. bf16 is only fast where the CPU has native bf16 (the footer
says; experiments/precision.py).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from experiments.components import build
from experiments.data.images import derived_seed
from experiments.data.shapes import generate_shapes
from experiments.precision import native_bf16
from experiments.rundir import RunDir
from experiments.train import CONFIG_DIR
from experiments.trainer import Trainer

MODELS = ("nin", "plainnet", "chargru")
ACTS = ("relu", "elu", "prelu", "mpelu", "tlu")
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


def ours(cfg: DictConfig, args: argparse.Namespace) -> tuple[float, float]:
    """(items/s of Trainer.train_step, seconds per train_batch call)."""
    parts = build(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(parts, cfg, RunDir(tmp))
        parts.model.train()
        per_step = timed(trainer.train_step, parts.device, args.warmup, args.steps)
    data = timed(parts.task.train_batch, parts.device, 1, args.steps)
    return items_per_step(cfg) / per_step, data


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


def measure(args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    rows, references = [], {}
    options = {k: OPTIONS[k] for k in args.options if not (args.quick and OPTIONS[k][1])}
    # the GRU has no conv maps: a channels_last option is its NCHW twin there, bf16 runs NCHW
    gru_options: dict[str, tuple[bool, bool, str]] = {}
    for name, (_, compiled, precision) in options.items():
        gru_options.setdefault(NCHW_TWIN.get(name, name), (False, compiled, precision))
    for model in args.models:
        acts = [*args.acts, "tanh"] if model == "chargru" and "tanh" not in args.acts else args.acts
        if model != "chargru":
            base = config(model, "relu", args, "trainer.channels_last=false")
            references[model] = reference(base, args)
            print(f"{model} reference loop: {references[model]:.1f} img/s", flush=True)
        for act in acts:
            row = Row(model, act, "char/s" if model == "chargru" else "img/s")
            for name, (channels_last, compiled, precision) in (
                gru_options if model == "chargru" else options
            ).items():
                cfg = config(
                    model,
                    act,
                    args,
                    f"trainer.channels_last={str(channels_last).lower()}",
                    f"trainer.compile={str(compiled).lower()}",
                    f"trainer.precision={precision}",
                    f"trainer.flush_denormal={str(args.flush_denormal).lower()}",
                )
                try:
                    rate, data_s = ours(cfg, args)
                except Exception as err:  # one broken option (a compiler bug) is a result too
                    print(f"  {model} {act} {name}: failed: {str(err).splitlines()[0]}")
                    row.rates[name] = math.nan
                    continue
                row.rates[name] = rate
                if name == "eager":
                    row.data_share = data_s * rate / items_per_step(cfg)
                print(f"  {model} {act} {name}: {rate:.1f} {row.unit}", flush=True)
            rows.append(row)
    return rows, references


def best(row: Row) -> float:
    """The fastest fp32 option that ran (NaN marks one that failed)."""
    fp32 = (v for k, v in row.rates.items() if OPTIONS[k][2] == "fp32" and not math.isnan(v))
    return max(fp32, default=math.nan)


def cell(rate: float) -> str:
    return "fail" if math.isnan(rate) else f"{rate:.0f}"


def table(rows: list[Row], references: dict[str, float]) -> str:
    names = list(OPTIONS)
    header = ["model", "act", "unit", *names, "ref", "xref", "xrelu", "xbf16", "data %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best_relu = {r.model: best(r) for r in rows if r.act == REFERENCE_UNIT.get(r.model, "relu")}
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
            f"{r.rates['bf16'] / top:.2f}" if "bf16" in r.rates else "-",
            f"{100 * r.data_share:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda when one is there")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiles)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: configs')")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--acts", nargs="+", default=list(ACTS))
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument(
        "--flush-denormal", action="store_true", help="trainer.flush_denormal for ours"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 steps, no compile")
    parser.add_argument("--data-dir", default=None, help="corpus cache for the GRU")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = min(args.steps, 2), 1
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        args.data_dir = args.data_dir or os.path.join(tmp, "data")
        rows, references = measure(args)
    load = os.getloadavg()
    print(
        f"\ntorch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"device {args.device}, threads {torch.get_num_threads()}, batch "
        f"{args.batch or 'config'}, steps {args.steps} (+{args.warmup} warm-up), "
        f"flush_denormal {args.flush_denormal}, native bf16 {native_bf16()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(table(rows, references))
    return rows


if __name__ == "__main__":
    main()

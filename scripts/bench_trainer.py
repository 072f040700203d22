"""The shared trainer's overhead: its time per step over a bare loop's, same model and batches.

Both loops train what ``experiments.components.build`` makes from the config (by default NIN on
``shapes`` on the CPU, as configs/ define them) from the same seed; the trainer runs at its
default logging (metrics every ``trainer.log_every`` steps, grad norm logged) with periodic
evaluation and checkpoints off, and its time per step is metrics.csv's ``time_s`` over the
steps after the first (its clock skips the first step, where kernels are picked or compiled,
so the bare loop, batch / loss / zero_grad / backward / step, leaves its first untimed too).
A warm-up loop runs first, then
the two alternate ``--repeats`` times and the fastest of each is compared (on a shared
machine other processes only ever slow a repeat down). Bound from the issue: <= 1.15.

    python scripts/bench_trainer.py [--steps 51] [--repeats 3] [override ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.components import build
from experiments.rundir import TIME_S, RunDir, read_csv
from experiments.train import CONFIG_DIR
from experiments.trainer import Trainer


def bare_loop(cfg: DictConfig, steps: int) -> float:
    """Seconds per step of the plainest loop over the same components, its first step (where
    kernels are chosen or compiled) untimed like the trainer's."""
    parts = build(cfg)
    task, model, optimizer = parts.task, parts.model, parts.optimizer
    model.train()
    for step in range(steps):
        if step == 1:
            start = time.perf_counter()
        loss = task.training_loss(model, task.train_batch(step), step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    loss.item()
    return (time.perf_counter() - start) / (steps - 1)


def trainer_loop(cfg: DictConfig, steps: int) -> float:
    """Seconds per step of the trainer, by its own training clock (metrics.csv ``time_s``,
    which leaves out the first step, evaluation and checkpoints)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(tmp)
        Trainer(build(cfg), cfg, run).fit()
        return float(read_csv(run.metrics)[-1][TIME_S]) / (steps - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=51)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.widths=[...]")
    args = parser.parse_args()
    fixed = [
        "trainer.device=cpu",
        f"trainer.max_steps={args.steps}",
        "trainer.eval_every=null",
        "trainer.checkpoint_every=null",
        "experiment_name=bench",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=[*fixed, *args.overrides])
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    bare_loop(cfg, 3)  # warm-up: allocator and kernel caches of the process
    bare, trainer = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(cfg, args.steps))
        trainer.append(trainer_loop(cfg, args.steps))
    widths = cfg.model.get("widths", "default")
    print(
        f"{cfg.model.name} (widths {list(widths)}) on {cfg.dataset.name}, batch "
        f"{cfg.dataset.batch_size}, cpu, {torch.get_num_threads()} threads, {args.steps} steps "
        f"x {args.repeats}, log_every {cfg.trainer.log_every}, "
        f"channels_last {cfg.trainer.channels_last}, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}"
    )
    for name, runs in (("bare loop", bare), ("trainer", trainer)):
        times = " ".join(f"{1e3 * x:.1f}" for x in runs)
        print(f"{name:9} ms/step: {times}  fastest {1e3 * min(runs):.1f}")
    print(f"ratio trainer / bare (fastest of each): {min(trainer) / min(bare):.3f} (bound 1.15)")


if __name__ == "__main__":
    main()

"""Initial training loss of a study's jobs: the first step's loss and the first logged value.

    python scripts/initial_loss.py plain30_init_cpu --units relu prelu elu mpelu_a1_wd0 \
        --inits he_fan_in he_fan_out he_average taylor lsuv [--out losses.json]

Builds each (unit, init) job of ``experiment=<name>`` as the trainer does (same seed, so the
same weights and batches) and takes its first ``trainer.log_every`` optimizer steps: the loss
of step 1 and the mean over the window, which is metrics.csv's first row. It checks init
fixes (a mis-scaled classifier shows as a first loss far above ln(classes)) without a sweep.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from hydra import compose, initialize_config_dir

from experiments.components import build
from experiments.optim import set_lr
from experiments.train import CONFIG_DIR


def first_losses(overrides: list[str]) -> dict[str, float]:
    """{'step1': loss of the first step, 'first_logged': mean over the first log window}."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=overrides)
    parts = build(cfg)
    parts.model.train()
    losses = []
    for step in range(cfg.trainer.log_every):
        set_lr(parts.optimizer, parts.schedule(step))
        batch = parts.task.train_batch(step)
        loss = parts.task.training_loss(parts.model, batch, step)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parts.optimizer.step()
        losses.append(loss.item())
    return {"step1": losses[0], "first_logged": sum(losses) / len(losses)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="a study preset (configs/experiment/<name>.yaml)")
    parser.add_argument("--units", nargs="+", required=True, help="experiment/unit choices")
    parser.add_argument("--inits", nargs="+", required=True, help="init choices")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as a sweep's joblib runs: one thread each
    results = {}
    print("| unit | init | step 1 | first logged |\n|---|---|---|---|")
    for unit in args.units:
        for init in args.inits:
            overrides = [
                f"experiment={args.experiment}",
                f"experiment/unit={unit}",
                f"init={init}",
                f"seed={args.seed}",
            ]
            try:
                found = first_losses(overrides)
            except ValueError as err:  # a bad choice: one line, as the trainer says it
                print(f"initial_loss: {err}", file=sys.stderr)
                return 1
            results[f"{unit} {init}"] = found
            print(f"| {unit} | {init} | {found['step1']:.3f} | {found['first_logged']:.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Text from a trained character model: ``python -m experiments.sample <run-dir> [options]``.

The model and its vocabulary are rebuilt from the run's saved config (experiments.components,
as training built them) and the corpus cache (the vocabulary is a function of the corpus and
its split), then the weights come from the run's checkpoint, read with ``weights_only=True`` so
loading runs no pickled code. The drawing itself is experiments.data.linux.sample.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from experiments.components import build_model_of, build_task_of
from experiments.data.linux import ByteVocab, sample
from experiments.rundir import RunDir


def load_run(run_dir: Path, data_dir: str | None = None) -> tuple[nn.Module, ByteVocab]:
    """The run's model with its last checkpoint's weights (on the CPU), and its vocabulary."""
    run = RunDir(run_dir)
    for path in (run.config, run.checkpoint):
        if not path.is_file():
            raise ValueError(f"{run_dir} is not a finished run directory: {path} is missing")
    cfg = OmegaConf.load(run.config)
    assert isinstance(cfg, DictConfig)
    if data_dir:
        cfg.paths.data_dir = data_dir
    task = build_task_of(cfg, torch.device("cpu"))
    vocab = getattr(task, "vocab", None)
    if not isinstance(vocab, ByteVocab):
        raise ValueError(f"dataset {cfg.dataset.name!r} of {run_dir} is not a text dataset")
    model = build_model_of(cfg, task)
    state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model, vocab


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--chars", type=int, default=500, help="characters to sample")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prime", default="\n", help="text to start from (default: newline)")
    parser.add_argument("--data-dir", help="corpus cache folder, if not the run's paths.data_dir")
    args = parser.parse_args(argv)
    try:
        model, vocab = load_run(args.run_dir, args.data_dir)
        text = sample(
            model,
            vocab,
            num_chars=args.chars,
            temperature=args.temperature,
            prime=args.prime,
            seed=args.seed,
        )
    except ValueError as err:
        sys.exit(f"error: {err}")
    print(text)


if __name__ == "__main__":
    main()

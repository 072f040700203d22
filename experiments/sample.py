"""Text from a trained character model: ``python -m experiments.sample <run-dir> [options]``.

The model and its vocabulary are rebuilt from the run's ``.hydra/config.yaml`` and the corpus
cache (the vocabulary is a function of the corpus and its split), then the weights come from
``checkpoints/last.pt``, read with ``weights_only=True`` so loading runs no pickled code.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import activations
from experiments.data import build_task
from experiments.data.linux import ByteVocab
from experiments.models import build_model


@torch.no_grad()
def sample(
    model: nn.Module,
    vocab: ByteVocab,
    *,
    num_chars: int = 500,
    temperature: float = 0.8,
    prime: str = "\n",
    seed: int = 1,
) -> str:
    """``prime`` followed by ``num_chars`` sampled characters (bytes, shown as UTF-8).

    Each character is drawn from softmax(logits / temperature) with a private generator
    seeded by ``seed``, so the global random state is untouched; the unknown symbol is never
    drawn. ``model`` is a CharGRU (time-major ``model(x, hidden) -> (logits, hidden)``); its
    train/eval mode is restored afterwards.
    """
    if isinstance(num_chars, bool) or not isinstance(num_chars, int) or num_chars < 0:
        raise ValueError(f"num_chars={num_chars!r} must be an integer >= 0")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be positive")
    if not prime:
        raise ValueError("prime='' is not allowed: sampling needs at least one character")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        logits, hidden = model(vocab.encode(prime.encode()).to(device).view(-1, 1), None)
        drawn: list[int] = []
        for _ in range(num_chars):
            scores = logits[-1, 0] / temperature
            scores[vocab.unk] = -torch.inf
            nxt = torch.multinomial(torch.softmax(scores, dim=0), 1, generator=generator)
            drawn.append(int(nxt))
            logits, hidden = model(nxt.view(1, 1), hidden)
    finally:
        model.train(was_training)
    return prime + vocab.decode(drawn)


def _options(node: DictConfig) -> dict[str, Any]:
    """A config group's keys besides ``name``, resolved to plain values."""
    options = OmegaConf.to_container(node, resolve=True)
    assert isinstance(options, dict)
    options.pop("name", None)
    return options


def load_run(run_dir: Path, data_dir: str | None = None) -> tuple[nn.Module, ByteVocab]:
    """The run's model with its last checkpoint's weights (on the CPU), and its vocabulary."""
    config = run_dir / ".hydra" / "config.yaml"
    checkpoint = run_dir / "checkpoints" / "last.pt"
    for path in (config, checkpoint):
        if not path.is_file():
            raise ValueError(f"{run_dir} is not a finished run directory: {path} is missing")
    cfg = OmegaConf.load(config)
    assert isinstance(cfg, DictConfig)
    task = build_task(
        cfg.dataset.name,
        device=torch.device("cpu"),
        seed=cfg.seed,
        data_dir=data_dir or cfg.paths.data_dir,
        **_options(cfg.dataset),
    )
    vocab = getattr(task, "vocab", None)
    if not isinstance(vocab, ByteVocab):
        raise ValueError(f"dataset {cfg.dataset.name!r} of {run_dir} is not a text dataset")
    act = functools.partial(activations.build, cfg.activation.name, **_options(cfg.activation))
    model = build_model(
        cfg.model.name,
        act,
        num_outputs=task.num_outputs,
        in_channels=task.in_channels,
        **_options(cfg.model),
    )
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
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

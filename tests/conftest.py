"""Shared fixtures: the real config tree composed at toy sizes, and the CLI in a subprocess."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.train import CONFIG_DIR

#: A run small enough for a unit test on two shared cores: a narrow NIN on a few hundred
#: procedural images, four steps, one thread (threads also keep CPU results reproducible).
TINY = (
    "model.widths=[8,8,8,8,8,8,8,8]",
    "dataset.train_size=300",
    "dataset.test_size=50",
    "dataset.val_size=50",
    "dataset.batch_size=16",
    "dataset.eval_batch_size=50",
    "trainer.max_steps=4",
    "trainer.log_every=2",
    "trainer.eval_every=null",
    "trainer.checkpoint_every=null",
    "trainer.threads=1",
    "trainer.channels_last=false",
)
#: PlainNet options that shrink it to six weight layers of a few channels.
TINY_PLAINNET = (
    "model=plainnet",
    "model.depth=6",
    "model.widths=[4,8,8]",
    "model.stage_convs=[1,1]",
    "model.fc_widths=[8,8]",
)


@pytest.fixture(autouse=True)
def root_logging_restored():
    """A run in-process lets Hydra set up logging: its handlers stay on the root logger, bound to
    the output stream pytest captured for that test and closed after it, and a later test's log
    record then prints a logging-error traceback. Each test leaves the root logger as it found
    it (pytest's own capture handlers excepted: pytest removes those itself)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def one_thread():
    """Tiny ops on a shared 2-core machine: a second OpenMP thread only adds barrier waits
    (a 4 x 8 training step took 100 ms with two threads under load, 3.5 ms with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config() -> Callable[..., DictConfig]:
    """``make(*overrides)``: the composed config, TINY sizes first so ``overrides`` win."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose("config", overrides=[*TINY, *overrides])

    return make


@pytest.fixture
def cli_command() -> Callable[..., list[str]]:
    """``command(*args, tiny=True)``: the argv of ``python -m experiments.train``, flags
    (``-m``) first, then the TINY overrides, then the other ``args``."""

    def command(*args: str, tiny: bool = True) -> list[str]:
        flags = [a for a in args if a.startswith("-")]
        overrides = [a for a in args if not a.startswith("-")]
        return [sys.executable, "-m", "experiments.train", *flags, *(TINY * tiny), *overrides]

    return command


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment without the user's HYDRA_FULL_ERROR and ACTLAB_* settings."""
    unset = ("HYDRA_FULL_ERROR", "ACTLAB_RESULTS", "ACTLAB_DATA")
    return {k: v for k, v in os.environ.items() if k not in unset}


@pytest.fixture
def cli(tmp_path: Path, cli_command, cli_env) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run(*args, tiny=True)``: the CLI run to completion in ``tmp_path`` (results land
    there), in ``cli_env``."""

    def run(*args: str, tiny: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            cli_command(*args, tiny=tiny),
            cwd=tmp_path,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run

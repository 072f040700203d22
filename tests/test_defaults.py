"""The bare command and every training example in README.md's Running and Sweeps sections
learn: at reduced size (narrower nets, fewer images and steps, the same recipe), the last logged
training loss ends clearly below chance, ln(classes), and nothing diverges.

The examples are read from README.md, so an example added there without a case here fails
``test_every_readme_training_example_has_a_case``."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from experiments.rundir import RunDir, read_csv
from experiments.train import run

ROOT = Path(__file__).resolve().parents[1]

#: the recipe untouched; only sizes shrink: NIN 1/6 as wide, PlainNet 1/4, 3,000 images
SMALL = (
    "dataset.train_size=3000",
    "dataset.test_size=500",
    "trainer.threads=1",
    "trainer.log_every=25",
    "trainer.eval_every=null",
    "trainer.checkpoint_every=null",
)
NIN_SMALL = ("model.widths=[32,32,16,32,32,32,32,32]",)
PLAIN_SMALL = ("model.widths=[16,32,64]", "model.fc_widths=[128,128]")
STEPS = 150
#: "clearly below ln(classes)": the last logged window's mean loss
LEARNED = 0.85 * math.log(10)

#: README training command (its overrides) -> the single runs that stand for it here. Sweeps
#: stand as their jobs (one seed each); CIFAR-10 and the GRU study need data no test has, and
#: are covered by their own tests (test_data_images, test_corpus / the GRU reference report).
CASES: dict[str, list[tuple[str, ...]]] = {
    "": [()],
    "activation=prelu model=plainnet init=taylor": [
        ("activation=prelu", "model=plainnet", "init=taylor")
    ],
    "activation=mpelu optimizer.act_lr_mult=5 optimizer.act_weight_decay_mult=5": [
        ("activation=mpelu", "optimizer.act_lr_mult=5", "optimizer.act_weight_decay_mult=5")
    ],
    "-m activation=relu,prelu,elu seed=1,2": [
        (f"activation={unit}", "seed=1") for unit in ("relu", "prelu", "elu")
    ],
    "-m optimizer.lr=1e-3,3e-4": [("optimizer.lr=3e-4",)],
    "-m activation=relu,elu init=he_fan_in,taylor": [
        (f"activation={unit}", f"init={init}")
        for unit in ("relu", "elu")
        for init in ("he_fan_in", "taylor")
    ],
}
NOT_HERE = (
    "dataset=cifar10",
    "experiment=gru_linux_tlu",
    "hydra/launcher=slurm",  # a cluster; the sweep itself is the preset's
    "dry_run=true",
    "--cfg",
    "--help",
)


def _readme_commands() -> list[str]:
    """The override part of every `python -m experiments.train` line in Running and Sweeps."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Running") : text.index("## Config groups")]
    commands = []
    for line in re.findall(r"^python -m experiments\.train(.*)$", section, flags=re.M):
        args = line.split("#")[0].strip()
        if any(skip in args for skip in NOT_HERE):
            continue
        args = re.sub(r"\s*hydra/launcher=joblib hydra\.launcher\.n_jobs=2", "", args)
        args = re.sub(r"\s*'run_name=[^']*'", "", args)
        commands.append(args.strip())
    return commands


def test_every_readme_training_example_has_a_case():
    assert set(_readme_commands()) == set(CASES)


def _learns(make, tmp_path: Path, overrides: tuple[str, ...]) -> None:
    arch = PLAIN_SMALL if "model=plainnet" in overrides else NIN_SMALL
    cfg = make(*SMALL, *arch, f"trainer.max_steps={STEPS}", *overrides)
    assert run(cfg, tmp_path) == "completed", overrides  # not diverged
    losses = [float(r["train_loss"]) for r in read_csv(RunDir(tmp_path).metrics)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < LEARNED, (overrides, losses)


@pytest.fixture
def recipe_config():
    """The default recipe with no TINY sizes: SMALL replaces them in full."""
    from hydra import compose, initialize_config_dir

    from experiments.train import CONFIG_DIR

    def make(*overrides: str):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose("config", overrides=list(overrides))

    return make


def test_the_bare_command_learns(recipe_config, tmp_path):
    _learns(recipe_config, tmp_path, ())


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [o for command, runs in CASES.items() if command for o in runs],
    ids=lambda o: "-".join(o) or "bare",
)
def test_each_readme_example_learns(overrides, recipe_config, tmp_path):
    _learns(recipe_config, tmp_path, overrides)

"""The bare command and every training example in README.md's Running and Sweeps sections
learn: at a reduced budget (150 steps of the default 300 for NIN; the full 300 for the lower
rate, and 450 for PlainNet-30, whose knee can come after step 300; one thread, the same nets and
data), the validation loss ends clearly below chance, ln(classes), and nothing diverges.

Measured (README "Default recipe"): the full NIN with the default recipe had a validation loss
of 2.138 (error 82.8%) at step 100 against ln 10 = 2.303, and 1.79 at step 200; at 100 steps
two of six cases ended just above the bar (the knee of the curve moves with the seed and the
thread count), so 150. Narrower nets (1/6 of NIN's widths) were still at chance after 150 steps,
so the nets keep their size here and only the budget shrinks. Each NIN case takes about five
minutes on one thread, hence ``slow``.

The examples are read from README.md, so an example added there without a case here fails
``test_every_readme_training_example_has_a_case``."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.rundir import RunDir, read_csv
from experiments.train import CONFIG_DIR, run

ROOT = Path(__file__).resolve().parents[1]

REDUCED = (
    "trainer.max_steps=150",
    "trainer.threads=1",
    "trainer.log_every=25",
    "trainer.eval_every=null",
    "trainer.checkpoint_every=null",
)
#: "clearly below ln(classes)": the validation loss after the last step
LEARNED = 0.95 * math.log(10)

#: README training command (its overrides) -> the single runs that stand for it here. Sweeps
#: stand as their jobs (one seed each); CIFAR-10, Fashion-MNIST and the GRU study need data no
#: test has, and are covered by their own tests (test_data_images, test_data_mnist, test_corpus).
CASES: dict[str, list[tuple[str, ...]]] = {
    "": [()],
    # PlainNet-30 under Adam at its tuned lr (configs/tuning/) sits at chance until a knee and
    # then falls; where the knee comes moves with the seed and with rounding. On one thread
    # with PReLU's fused kernel, seed 0 was still at chance at step 300 (2.29) while seeds 1
    # and 2 ended at 1.50 and 1.33 (2026-12-06). After the slope gradient's sums moved to
    # chunks of rows (5b91de3; 8x closer to a float64 sum on a 128x64x32x32 map, max relative
    # error 7.6e-6 against 6.4e-5), seed 0 left chance by step 100 (validation loss 1.86 at
    # 150, 1.31 at 300, 0.73 at 450) and seed 1 only at about step 275 (2.30, 2.27, 1.61). So
    # the command's own 300 steps are not enough for every seed, and this case runs 450 with
    # seed 1, the latest knee seen; the test asks "does it learn", not "by when".
    "activation=prelu model=plainnet init=taylor": [
        ("activation=prelu", "model=plainnet", "init=taylor", "trainer.max_steps=450", "seed=1")
    ],
    "activation=mpelu optimizer.act_lr_mult=5 optimizer.act_weight_decay_mult=5": [
        ("activation=mpelu", "optimizer.act_lr_mult=5", "optimizer.act_weight_decay_mult=5")
    ],
    "-m activation=relu,prelu,elu seed=1,2": [
        (f"activation={unit}", "seed=1") for unit in ("relu", "prelu", "elu")
    ],
    # a third of the default rate: 100 steps left it above the bar (2026-12-05), so the full 300
    "-m optimizer.lr=1e-3,3e-4": [("optimizer.lr=3e-4", "trainer.max_steps=300")],
    "-m activation=relu,elu init=he_fan_in,taylor": [
        (f"activation={unit}", f"init={init}")
        for unit in ("relu", "elu")
        for init in ("he_fan_in", "taylor")
    ],
}
NOT_HERE = (
    "dataset=cifar10",
    "dataset=fashion_mnist",  # Debian's package; test_data_mnist's slow test trains on it
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


def _learns(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    keys = {o.split("=", 1)[0] for o in overrides}
    reduced = [o for o in REDUCED if o.split("=", 1)[0] not in keys]  # a case may set its own
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=[*reduced, *overrides])
    assert run(cfg, tmp_path) == "completed", overrides  # not diverged
    losses = [float(r["train_loss"]) for r in read_csv(RunDir(tmp_path).metrics)]
    assert all(math.isfinite(x) for x in losses)
    final = RunDir(tmp_path).read_summary()["final"]
    assert final["loss"] < LEARNED, (overrides, final, losses)


@pytest.mark.slow
def test_the_bare_command_learns(tmp_path):
    _learns(tmp_path, ())


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [o for command, runs in CASES.items() if command for o in runs],
    ids=lambda o: "-".join(o),
)
def test_each_readme_example_learns(overrides, tmp_path):
    _learns(tmp_path, overrides)

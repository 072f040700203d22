"""Importing actlab changes nothing global: a notebook composes a preset with Hydra's own API
and trains it with no import besides the ones it needs, and importing the report leaves
matplotlib's backend and rcParams as they were. Each check runs in a fresh interpreter, where
nothing earlier (another test, conftest) has imported or registered anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NOTEBOOK = """
import importlib.resources, json, sys
from hydra import compose, initialize_config_dir

# composed before any actlab module is imported (the package's config tree is its data)
config_dir = str(importlib.resources.files("experiments") / "configs")
with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
    cfg = compose("config", overrides=[
        "experiment=quickstart", "trainer.max_steps=3", "trainer.log_every=1",
        "trainer.eval_every=null", "trainer.checkpoint_every=null", "trainer.threads=1",
        "dataset.train_size=200", "dataset.val_size=50", "dataset.test_size=50",
    ])
import experiments.train

assert str(experiments.train.CONFIG_DIR) == config_dir
status = experiments.train.run(cfg, sys.argv[1])
print(json.dumps({"status": status, "steps": cfg.trainer.max_steps}))
"""


def _python(code: str, *args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_notebook_composes_a_preset_and_trains_it(tmp_path: Path, cli_env) -> None:
    """Composed before anything of actlab is imported: the schemas the group YAMLs include
    reach Hydra through its plugin hook (hydra_plugins/actlab/schemas.py), whoever composes."""
    run_dir = tmp_path / "run"
    out = json.loads(_python(NOTEBOOK, str(run_dir), cwd=tmp_path, env=cli_env))
    assert out == {"status": "completed", "steps": 3}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 3


def test_importing_the_report_and_activations_leaves_matplotlib_and_torch_alone(
    tmp_path: Path, cli_env
) -> None:
    code = """
import json, matplotlib, torch
before = (matplotlib.get_backend(), dict(matplotlib.rcParams), torch.get_num_threads())
import activations, experiments.report, experiments.report.build, experiments.config
after = (matplotlib.get_backend(), dict(matplotlib.rcParams), torch.get_num_threads())
print(json.dumps([before[0] == after[0], before[1] == after[1], before[2] == after[2]]))
"""
    env = {**cli_env, "MPLBACKEND": "svg"}  # a backend the report must not replace with Agg
    assert json.loads(_python(code, cwd=tmp_path, env=env)) == [True, True, True]

"""The command line in subprocesses: one-line errors that leave no run directory, SIGKILL and
rerun equal to an unbroken run, divergence as a result (exit 0) alone and inside a parallel
sweep, and README.md's commands matching what CI runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from experiments.rundir import RunDir, read_csv

ROOT = Path(__file__).resolve().parents[1]


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("activation=nosuch", "error: unknown activation 'nosuch'; choose from: brelu, "),
        ("trainer.max_stpes=5", "error: unknown config key 'trainer.max_stpes'; did you mean"),
        ("trainer.max_steps=-3", "error: trainer.max_steps=-3 is out of range; must be >= 1"),
        ("dataset=cifar10", "error: CIFAR10 files missing in data/cifar-10-batches-py: "),
    ],
)
def test_bad_config_fails_in_one_line_and_writes_nothing(override, message, cli, tmp_path):
    result = cli(override, tiny=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(message)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_sigkill_then_rerun_equals_an_unbroken_run(cli, cli_command, cli_env, tmp_path):
    args = (
        "activation=prelu",
        "trainer.max_steps=30",
        "trainer.log_every=1",
        "trainer.checkpoint_every=4",
        "trainer.deterministic=true",
    )
    assert cli(*args, "experiment_name=unbroken").returncode == 0
    cut = RunDir(tmp_path / "results" / "cut" / "prelu-nin-shapes-s0")
    with subprocess.Popen(
        cli_command(*args, "experiment_name=cut"),
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as victim:
        deadline = time.monotonic() + 120
        while len(read_csv(cut.metrics)) < 10 and victim.poll() is None:
            assert time.monotonic() < deadline, "the run never logged 10 steps"
            time.sleep(0.005)
        victim.kill()
    assert victim.returncode == -9, "the run finished before it could be killed"
    killed_at = len(read_csv(cut.metrics))
    assert _summary(cut.path)["status"] == "running" and killed_at < 30
    rerun = cli(*args, "experiment_name=cut")
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming at step" in rerun.stdout
    unbroken = RunDir(tmp_path / "results" / "unbroken" / "prelu-nin-shapes-s0")
    for name in ("metrics", "eval"):
        ours, reference = read_csv(getattr(cut, name)), read_csv(getattr(unbroken, name))
        assert [r["step"] for r in ours] == [r["step"] for r in reference]
        for row, ref in zip(ours, reference, strict=True):
            for key in ref.keys() - {"time_s", "cpu_s", "split"}:
                assert float(row[key]) == pytest.approx(float(ref[key]), rel=1e-6, abs=1e-6)
    final = torch.load(cut.checkpoint, weights_only=True)["model"]
    reference = torch.load(unbroken.checkpoint, weights_only=True)["model"]
    for key, value in reference.items():
        torch.testing.assert_close(final[key], value, rtol=1e-6, atol=1e-6)


def test_divergence_exits_zero_and_is_not_rerun(cli, tmp_path):
    args = ("optimizer.lr=1e6", "trainer.max_steps=20")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "results" / "default" / "relu-nin-shapes-s0"
    summary = _summary(run_dir)
    assert summary["status"] == "diverged" and 1 <= summary["diverged_step"] < 20
    again = cli(*args)
    assert again.returncode == 0
    assert re.search(r"already diverged at step \d+; nothing to do", again.stdout)


def test_parallel_sweep_goes_on_past_a_diverged_job(cli, tmp_path):
    result = cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "trainer.threads=null",
        "optimizer.lr=1e6,0.01",
        "run_name=lr${optimizer.lr}",
        "report=false",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    runs = tmp_path / "results" / "default"
    summaries = {p.name: _summary(p) for p in runs.iterdir() if p.is_dir() and p.name != ".sweeps"}
    assert {k: s["status"] for k, s in summaries.items()} == {
        "lr1000000.0": "diverged",
        "lr0.01": "completed",
    }
    assert {s["threads"] for s in summaries.values()} == {max(1, (os.cpu_count() or 1) // 2)}


def test_sweep_with_a_refused_job_still_writes_its_report(cli, tmp_path):
    """Hydra raises a job's setup error before its end-of-sweep callbacks; the report of the
    jobs that ran is written all the same, and the sweep still exits 1 with the error's line."""
    result = cli("-m", "optimizer.lr=-1,0.01", "run_name=lr${optimizer.lr}")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "error: optimizer.lr=-1.0 is out of range; must be > 0"
    runs = tmp_path / "results" / "default"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == [".sweeps", "lr0.01", "report"]
    assert [r["run"] for r in read_csv(runs / "report" / "runs.csv")] == ["lr0.01"]


def _code_blocks(markdown: str) -> list[str]:
    return re.findall(r"```(?:bash|sh)\n(.*?)```", markdown, flags=re.S)


def test_readme_test_command_is_what_ci_runs():
    """.ci/run does in a fresh venv exactly what README.md tells a newcomer to run."""
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    blocks = _code_blocks((ROOT / "README.md").read_text())
    test_block = next(b for b in blocks if "pytest" in b)
    commands = [c.strip() for line in test_block.splitlines() for c in line.split("&&")]
    assert [c.replace("source ", ". ") for c in commands if c] == ci


@pytest.mark.slow
def test_quickstart_leaves_run_directories_as_designed(tmp_path):
    """README's first command minus the install: the quickstart sweep, in a fresh directory."""
    blocks = _code_blocks((ROOT / "README.md").read_text())
    command = next(b for b in blocks if "experiment=quickstart" in b).strip().splitlines()[-1]
    train = command.split("&&")[-1].split()
    assert train[:3] == ["python", "-m", "experiments.train"]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, *train[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr
    runs = [p for p in (tmp_path / "results" / "quickstart").iterdir() if (p / ".hydra").is_dir()]
    preset = yaml.safe_load((ROOT / "configs" / "experiment" / "quickstart.yaml").read_text())
    units = preset["hydra"]["sweeper"]["params"]["activation"].split(",")
    ran = [yaml.safe_load((r / ".hydra" / "config.yaml").read_text()) for r in runs]
    assert sorted(cfg["activation"]["name"] for cfg in ran) == sorted(units)  # one run per unit
    for run in runs:
        files = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
        expected = {"metrics.csv", "eval.csv", "summary.json", "checkpoints/last.pt"}
        assert expected | {".hydra/config.yaml"} <= files
        assert _summary(run)["status"] == "completed"
    print(f"quickstart took {time.monotonic() - started:.0f} s")


def test_help_lists_the_choice_groups_and_the_config_without_importing_torch(cli_env, tmp_path):
    """--help: every group folder with its choices (the ConfigStore's schema/ key types left
    out), then the config with the given overrides applied; torch is never imported."""
    code = (
        "import sys; sys.argv = ['actlab-train', '--help', 'activation=elu', 'model=plainnet'];"
        "from experiments.train import main; main(); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=cli_env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "False"
    section = out.stdout.split("(group=option)\n", 1)[1].split("== Config ==", 1)[0]
    groups = dict(line.split(": ", 1) for line in section.strip().splitlines())
    assert groups["model"] == "chargru, nin, plainnet"
    assert groups["tuning"] == "plainnet_adam"
    assert "experiment/unit" in groups
    assert not any(g.startswith(("schema", "hydra")) for g in groups)
    page = out.stdout.split("(foo.bar=value)\n", 1)[1]
    config = yaml.safe_load(page.split("\nHydra's own flags", 1)[0])
    assert config["activation"]["name"] == "elu" and config["optimizer"]["lr"] == 2e-4
    assert "hydra" not in config
    assert not (tmp_path / "results").exists()

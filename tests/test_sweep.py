"""Sweeps: every job its own run directory (experiments/sweep.py), refusals before the first job,
study presets sweeping without -m, the dry run, and one thread rule under every launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.cores import threads_for
from experiments.rundir import read_csv
from experiments.sweep import SweepError, name_apart
from experiments.train import CONFIG_DIR

QUICKSTART_UNITS = ("relu", "lrelu", "prelu", "rrelu", "elu", "mpelu")


def _runs(root: Path) -> dict[str, dict]:
    return {
        p.name: json.loads((p / "summary.json").read_text())
        for p in sorted(root.iterdir())
        if (p / "summary.json").is_file()
    }


def test_name_apart_adds_only_the_keys_that_tell_colliding_jobs_apart():
    jobs = [[f"activation={a}", f"optimizer.lr={lr}"] for a in ("relu", "elu") for lr in (1, 2)]
    dirs = [Path(f"r/{job[0].split('=')[1]}") for job in jobs]  # run_name holds the unit only
    named = name_apart(jobs, dirs, [d.name for d in dirs])
    assert [job[-1] for job in named] == [
        "run_name='relu-optimizer.lr=1'",
        "run_name='relu-optimizer.lr=2'",
        "run_name='elu-optimizer.lr=1'",
        "run_name='elu-optimizer.lr=2'",
    ]
    apart = [Path(f"r/{i}") for i in range(4)]
    assert name_apart(jobs, apart, ["x"] * 4) == jobs  # no collision: nothing changes
    with pytest.raises(SweepError, match=r"jobs 0 and 1 of this sweep are the same run \(r/a\)"):
        name_apart([["seed=1"], ["seed=1"]], [Path("r/a")] * 2, ["a", "a"])


def test_a_sweep_over_a_key_missing_from_run_name_runs_every_job(cli, tmp_path):
    result = cli("-m", "optimizer.lr=0.1,0.01", "report=false", timeout=300)
    assert result.returncode == 0, result.stderr
    runs = _runs(tmp_path / "results" / "default")
    assert {k: s["status"] for k, s in runs.items()} == {
        "relu-nin-shapes-s0-optimizer.lr=0.1": "completed",
        "relu-nin-shapes-s0-optimizer.lr=0.01": "completed",
    }
    lrs = {
        name: float(read_csv(tmp_path / "results" / "default" / name / "metrics.csv")[0]["lr"])
        for name in runs
    }
    assert lrs == {
        "relu-nin-shapes-s0-optimizer.lr=0.1": 0.1,
        "relu-nin-shapes-s0-optimizer.lr=0.01": 0.01,
    }


def test_a_sweep_of_one_run_twice_is_refused_before_anything_runs(cli, tmp_path):
    result = cli("-m", "seed=1,1")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: jobs 0 and 1 of this sweep are the same run "
        f"({Path('results/default/relu-nin-shapes-s1')}): "
        "remove the value repeated in a swept key's list"
    ]
    assert not (tmp_path / "results").exists()


def test_study_presets_are_sweeps_without_dash_m():
    studies = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
    assert "plain30_init_cpu" in studies
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        for study in studies:
            cfg = compose("config", overrides=[f"experiment={study}"], return_hydra_config=True)
            assert str(cfg.hydra.mode) == "RunMode.MULTIRUN", study
            assert cfg.hydra.sweeper.params, study


def test_dry_run_of_a_study_lists_its_jobs_and_trains_nothing(cli, tmp_path):
    """The quickstart preset without -m: six jobs listed with directories and estimates."""
    result = cli("experiment=quickstart", "hydra.sweeper.dry_run=true", timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("dry run: 6 job(s)"))
    table = lines[start + 2 : start + 8]
    names = [f"{u}-nin-shapes-s0" for u in QUICKSTART_UNITS]
    for line, name in zip(table, names, strict=True):
        assert str(Path("results/quickstart") / name) in line and " new " in line
        assert "4/4" in line and "s/step)" in line
    assert lines[start + 8].startswith("total: 6 job(s), ")
    assert not (tmp_path / "results").exists()


def test_dry_run_resolves_each_jobs_hydra_choices_and_time_budgets(cli, tmp_path):
    """A run name built from ``${hydra:runtime.choices...}`` (as plain30_init's) is each job's own,
    not the last job's (which made every name collide); a run bounded by max_time_s alone is
    estimated at its time budget."""
    result = cli(
        "-m",
        "activation=relu,elu",
        "run_name=${hydra:runtime.choices.activation}-t",
        "trainer.max_steps=null",
        "trainer.max_time_s=30",
        "hydra.sweeper.dry_run=true",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("dry run: 2 job(s)"))
    for line, name in zip(lines[start + 2 : start + 4], ("relu-t", "elu-t"), strict=True):
        assert line.split()[1] == str(Path("results/default") / name)
        assert "0/-" in line and "0m30s (max_time_s)" in line
    assert lines[start + 4].startswith("total: 2 job(s), 1m00s of training")
    assert not (tmp_path / "results").exists()


def test_one_thread_rule_under_every_launcher(cli, tmp_path):
    """trainer.threads=null: basic and joblib (one job at a time) give a job the same threads,
    recorded in summary.json, and so the same numbers."""
    results = {}
    for launcher in ((), ("hydra/launcher=joblib", "hydra.launcher.n_jobs=1")):
        where = "joblib" if launcher else "basic"
        args = (
            "-m",
            "seed=3",
            "trainer.threads=null",
            f"paths.results_dir={where}",
            "report=false",
        )
        result = cli(*args, *launcher, timeout=300)
        assert result.returncode == 0, result.stderr
        (name,) = _runs(tmp_path / where / "default")
        run = tmp_path / where / "default" / name
        rows = [
            {k: v for k, v in r.items() if k not in ("time_s", "cpu_s")}
            for r in read_csv(run / "metrics.csv")
        ]
        results[where] = (json.loads((run / "summary.json").read_text())["threads"], rows)
    assert results["basic"][0] == threads_for(1)
    assert results["basic"] == results["joblib"]

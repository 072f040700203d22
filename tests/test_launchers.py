"""Launchers: a parallel sweep (joblib) leaves the same run directories, with the same numbers,
as the sequential sweep, and ``hydra/launcher=slurm`` composes where the submitit plugin is
installed (a local submitit sweep stands in for SLURM, which no test machine has)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from experiments.rundir import read_csv

#: Four jobs: two units x two seeds, run names from the default pattern.
SWEEP = ("-m", "activation=relu,elu", "seed=1,2", "experiment_name=sweep", "report=false")
RUNS = {f"{unit}-nin-shapes-s{seed}" for unit in ("relu", "elu") for seed in (1, 2)}
SUBMITIT = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None


def _results(root: Path) -> dict[str, dict]:
    """Per run directory: its files, summary (less timings), config and logged rows (less
    time_s); under "" the sweep directory's own files."""

    def rows(path: Path) -> list[dict]:
        clocks = ("time_s", "cpu_s")
        return [{k: v for k, v in row.items() if k not in clocks} for row in read_csv(path)]

    out: dict[str, dict] = {"": {"files": sorted(p.name for p in root.iterdir() if p.is_file())}}
    for run in sorted(p for p in root.iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((run / "summary.json").read_text())
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        config.pop("paths")
        out[run.name] = {
            "files": sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()),
            "status": summary["status"],
            "step": summary["step"],
            "final": summary["final"],
            "best": summary["best"],
            "test": summary["test"],
            "threads": summary["threads"],
            "config": config,
            "metrics": rows(run / "metrics.csv"),
            "eval": rows(run / "eval.csv"),
        }
    return out


@pytest.fixture
def sweep(cli, tmp_path):
    """``sweep(results_dir, *launcher_overrides)``: run the four jobs (CLI, in tmp_path) and
    return their results."""

    def run(results_dir: str, *launcher: str) -> dict[str, dict]:
        result = cli(*SWEEP, f"paths.results_dir={results_dir}", *launcher, timeout=300)
        assert result.returncode == 0, result.stderr
        return _results(tmp_path / results_dir / "sweep")

    return run


def test_joblib_sweep_equals_the_sequential_sweep_and_lists_its_jobs(sweep, tmp_path):
    """Bit for bit the sequential sweep's results. And the report callback travels pickled to
    the joblib workers: each job adds its run directory to its sweep's job list, which the
    end-of-sweep report reads (one test, so the parallel sweep runs once: 22 s)."""
    sequential = sweep("sequential")
    parallel = sweep("parallel", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert set(sequential) == RUNS | {""}
    assert sequential[""]["files"] == ["multirun.yaml"]  # nothing else beside the run dirs
    runs = [sequential[name] for name in RUNS]
    assert {r["status"] for r in runs} == {"completed"}
    assert {r["threads"] for r in runs} == {1}  # trainer.threads=1 (TINY) beats cores // n_jobs
    assert parallel == sequential  # CPU, one thread each: every logged number bit for bit
    (listed,) = (tmp_path / "parallel" / "sweep" / ".sweeps").iterdir()
    assert {p.read_text().strip() for p in listed.iterdir()} == RUNS
    assert sorted(p.name for p in listed.iterdir()) == ["0", "1", "2", "3"]


@pytest.mark.skipif(not SUBMITIT, reason="hydra-submitit-launcher is not installed")
def test_slurm_launcher_composes_with_the_sweep_directories(cli):
    result = cli("experiment=plain30_init", "hydra/launcher=slurm", "--cfg=hydra", tiny=False)
    assert result.returncode == 0, result.stderr
    hydra = yaml.safe_load(result.stdout)["hydra"]
    launcher = hydra["launcher"]
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["submitit_folder"].startswith("${hydra.sweep.dir}/")
    assert (launcher["gpus_per_node"], launcher["tasks_per_node"]) == (1, 1)
    assert launcher["timeout_min"] > 0 and launcher["max_num_timeout"] >= 0
    # the same run directories as any other launcher
    assert hydra["sweep"] == {
        "dir": "${paths.results_dir}/${experiment_name}",
        "subdir": "${run_name}",
    }


@pytest.mark.slow
@pytest.mark.skipif(not SUBMITIT, reason="hydra-submitit-launcher is not installed")
def test_submitit_sweep_equals_the_sequential_sweep(sweep):
    """submitit's local executor runs the code path SLURM runs (pickled jobs in fresh processes)."""
    sequential = sweep("sequential")
    submitted = sweep("submitit", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    assert submitted == sequential  # (its logs go to a .submitit/ folder beside the runs)

"""CPU time, the equal-time axis contention cannot stretch: the same tiny job alone and beside
busy processes on the same core has about the same CPU seconds, while its wall time grows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.report.runs import load_run
from experiments.report.timing import CONTENDED_BELOW, utilisation
from experiments.rundir import METRICS_COLUMNS, CsvLog, read_csv

#: busy processes sharing the job's core in the contended run.
BUSY = 3


def _pinned(cpu: int):
    return lambda: os.sched_setaffinity(0, {cpu})


def _train(tmp_path: Path, name: str, cpu: int, command, env: dict[str, str]) -> Path:
    args = [
        "trainer.max_steps=600",
        "trainer.log_every=100",
        f"run_name={name}",
        f"paths.results_dir={tmp_path}",
        "report=false",
    ]
    done = subprocess.run(
        command(*args),
        preexec_fn=_pinned(cpu),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp_path / "default" / name


@pytest.mark.slow
def test_cpu_time_stays_while_wall_time_grows_under_contention(tmp_path, cli_command, cli_env):
    cpu = min(os.sched_getaffinity(0))
    alone = _train(tmp_path, "alone", cpu, cli_command, cli_env)
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=_pinned(cpu))
        for _ in range(BUSY)
    ]
    try:
        shared = _train(tmp_path, "shared", cpu, cli_command, cli_env)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    summaries = [json.loads((d / "summary.json").read_text()) for d in (alone, shared)]
    wall = [s["train_time_s"] for s in summaries]
    cpu_s = [s["train_cpu_s"] for s in summaries]
    print(f"wall alone {wall[0]:.2f} s, shared {wall[1]:.2f} s; CPU {cpu_s[0]:.2f}, {cpu_s[1]:.2f}")
    assert cpu_s[1] / cpu_s[0] == pytest.approx(1.0, abs=0.25)
    assert wall[1] / wall[0] > 1.5 * max(cpu_s[1] / cpu_s[0], cpu_s[0] / cpu_s[1])
    # metrics.csv's last row carries the same clocks (summary.json's go on to the sample text
    # written after it); the report names the shared run
    last = pd.read_csv(shared / "metrics.csv").iloc[-1]
    assert last["cpu_s"] == pytest.approx(cpu_s[1], rel=0.05)
    assert last["time_s"] == pytest.approx(wall[1], rel=0.05)
    assert utilisation(load_run(shared)) < CONTENDED_BELOW


def test_a_resumed_run_from_before_cpu_time_keeps_its_header(tmp_path):
    """metrics.csv written without cpu_s goes on without it, every row matching its header."""
    path = tmp_path / "metrics.csv"
    path.write_text("step,epoch,time_s,train_loss,lr\n2,0.1,0.5,2.3,0.1\n")
    with CsvLog(path, METRICS_COLUMNS) as log:
        log.write(step=4, epoch=0.2, time_s=1.0, cpu_s=0.9, train_loss=2.2, lr=0.1)
    assert read_csv(path) == [
        {"step": "2", "epoch": "0.1", "time_s": "0.5", "train_loss": "2.3", "lr": "0.1"},
        {"step": "4", "epoch": "0.2", "time_s": "1.0", "train_loss": "2.2", "lr": "0.1"},
    ]
    fresh = tmp_path / "new.csv"
    with CsvLog(fresh, METRICS_COLUMNS) as log:
        log.write(step=4, epoch=0.2, time_s=1.0, cpu_s=0.9, train_loss=2.2, lr=0.1)
    assert read_csv(fresh)[0]["cpu_s"] == "0.9"

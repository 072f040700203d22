"""Issue 7: the command line driven through bad input and faults, checking for every case the
exit status, the one line on stderr and what is left on disk.

tests/test_cli.py already covers an unknown activation, a misspelt trainer key, an out-of-range
max_steps, missing CIFAR files, one SIGKILL + rerun and divergence; tests/test_trainer.py covers
SIGTERM + resume in process. This module fills the rest of the issue's list: other bad names,
types, ranges and conflicts; corrupted data; SIGKILL inside checkpoint and CSV writes; SIGTERM /
Ctrl-C through the CLI; damaged, crafted and half-written checkpoints; a sweep with a failing, a
diverging and a killed job; pickles that would run code.

Faults inside a write are injected by ``_INJECT``: the real ``experiments.train.main`` with
``checkpoint.save`` or ``CsvLog.write`` wrapped to SIGKILL the process at a chosen step, which
makes "killed while writing" deterministic instead of a race against a millisecond write.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from cifar_fixture import write_cifar10
from conftest import TINY

import experiments.checkpoint
from experiments.rundir import RunDir, read_csv
from experiments.train import run

ROOT = Path(__file__).resolve().parents[1]

#: the TINY overrides of conftest.py minus the shapes-only dataset keys, for other datasets.
TINY_ANY_DATA = (
    "trainer.max_steps=2",
    "trainer.log_every=1",
    "trainer.eval_every=null",
    "trainer.checkpoint_every=null",
    "trainer.threads=1",
    "trainer.channels_last=false",
)
TINY_CIFAR = (
    *TINY_ANY_DATA,
    "model.widths=[8,8,8,8,8,8,8,8]",
    "dataset=cifar10",
    "dataset.val_size=10",
    "dataset.batch_size=16",
)
TINY_LINUX = (
    *TINY_ANY_DATA,
    "dataset=linux",
    "model=chargru",
    "model.hidden_size=8",
    "model.num_layers=1",
    "dataset.batch_size=4",
    "dataset.eval_batch_size=4",
    "dataset.seq_len=8",
    "paths.data_dir=DATA/cache",
)


class Evil:
    """Unpickling this runs ``touch <marker>``: what a crafted data or checkpoint file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


#: The real CLI with a fault injected where ACTLAB_FAULT=<where>:<step> says (module doc).
_INJECT = """
import io, os, signal
import torch
from experiments import checkpoint, rundir
from experiments.train import main

where, _, at = os.environ.get("ACTLAB_FAULT", "none:0").partition(":")
at = int(at)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_save, real_write = checkpoint.save, rundir.CsvLog.write

def save(path, state):
    if where == "checkpoint" and state["step"] == at:  # killed half-way through the write
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        def half(f):
            f.write(data[: len(data) // 2]); f.flush(); die()
        checkpoint.atomic_write(path, half)
    real_save(path, state)
    if where == "after_checkpoint" and state["step"] == at:
        die()

def write(self, **row):
    if where == "csv" and row["step"] == at:  # killed half-way through a row
        self._file.write(f"{at},0.12"); self._file.flush(); die()
    real_write(self, **row)

checkpoint.save, rundir.CsvLog.write = save, write
main()
"""


def _launch(cwd: Path, env: dict, args: tuple[str, ...], **env_extra: str) -> subprocess.Popen:
    """The CLI (through _INJECT) started in ``cwd``, output captured."""
    return subprocess.Popen(
        [sys.executable, "-c", _INJECT, *args],
        cwd=cwd,
        env={**env, **env_extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _cli(cwd: Path, env: dict, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    return _finish(_launch(cwd, env, args, **env_extra))


def _wait_for_rows(proc: subprocess.Popen, path: Path, rows: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(read_csv(path)) < rows:
        assert proc.poll() is None, f"the run ended before {path.name} had {rows} rows"
        assert time.monotonic() < deadline, f"{path.name} never reached {rows} rows"
        time.sleep(0.005)


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- 1 + 2: bad configuration and bad data: one line, exit 1, nothing left -------------------


def _data_fixtures(root: Path) -> dict[str, dict[str, str]]:
    """Files the bad-data cases read; returns the md5s to trust per CIFAR case."""
    cifar = write_cifar10(root / "cifar_truncated")
    batch = root / "cifar_truncated" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    evil = write_cifar10(root / "cifar_evil")
    evil_batch = root / "cifar_evil" / "cifar-10-batches-py" / "data_batch_1"
    evil_batch.write_bytes(pickle.dumps({"data": Evil(root / "PWNED")}, protocol=2))
    (root / "empty_tree" / "docs").mkdir(parents=True)
    (root / "empty_tree" / "docs" / "README").write_text("no sources here\n")
    (root / "tiny_tree").mkdir()
    (root / "tiny_tree" / "a.c").write_text("int x;\n")
    whole = root / "whole.tar"
    with tarfile.open(whole, "w") as tar:
        for i in range(20):
            member = root / f"f{i}.c"
            member.write_bytes(f"int a{i};\n".encode() * 2000)
            tar.add(member, arcname=f"linux/f{i}.c")
    with tarfile.open(whole) as tar:
        cut = tar.getmembers()[10].offset  # where a header starts: tarfile's quiet stop
    (root / "truncated.tar").write_bytes(whole.read_bytes()[:cut])
    return {"cifar_truncated": cifar.md5, "cifar_evil": evil.md5}


#: (case id, overrides, the start of the one stderr line). DATA is replaced by the fixture root.
BAD_INPUT = [
    ("model", ("model=nosuch",), "error: unknown model 'nosuch'; choose from: chargru, nin, "),
    ("dataset", ("dataset=nosuch",), "error: unknown dataset 'nosuch'; choose from: cifar10, "),
    ("init", ("init=nosuch",), "error: unknown init 'nosuch'; choose from: default, gaussian"),
    ("optimizer", ("optimizer=nosuch",), "error: unknown optimizer 'nosuch'; choose from: adagrad"),
    (
        "misspelt",
        ("dataset.batch_sise=3",),
        "error: unknown config key 'dataset.batch_sise'; did you mean 'dataset.batch_size'?",
    ),
    (
        "type",
        ("trainer.max_steps=abc",),
        "error: trainer.max_steps: Value 'abc' of type 'str' could not be converted to Integer",
    ),
    ("lr", ("optimizer.lr=-0.1",), "error: optimizer.lr=-0.1 is out of range; must be > 0"),
    (
        "dropout",
        ("model.dropout=1.5",),
        "error: model.dropout=1.5 is not allowed; use a probability with 0 <= p < 1",
    ),
    (
        "depth",
        ("model=plainnet", "model.depth=0", "model.widths=[4,4,4]"),
        "error: model.depth=0 is not allowed; it must be an integer >= 9",
    ),
    (
        "rrelu",
        ("activation=rrelu", "activation.lower=8", "activation.upper=3"),
        "error: rrelu needs 0 < lower <= upper, got lower=8, upper=3",
    ),
    (
        "maxout",
        ("activation=maxout", "activation.k=3"),
        "error: maxout k=3 does not divide the 8 input channels",
    ),
    (
        "conflict_model_options",
        ("model=chargru",),
        "error: unknown config key 'model.widths' (valid keys of model: name, hidden_size,",
    ),
    (
        "conflict_sizes",
        ("dataset.batch_size=1000",),
        "error: batch_size 1000 exceeds the 250 training images",
    ),
    (
        "conflict_budget",
        ("trainer.max_steps=null",),
        "error: set trainer.max_steps or trainer.max_epochs (both are null)",
    ),
    (
        "cifar_truncated",
        (*TINY_CIFAR, "paths.data_dir=DATA/cifar_truncated"),
        "error: DATA/cifar_truncated/cifar-10-batches-py/data_batch_3 is corrupted or truncated",
    ),
    (
        "cifar_evil",
        (*TINY_CIFAR, "paths.data_dir=DATA/cifar_evil"),
        "error: DATA/cifar_evil/cifar-10-batches-py/data_batch_1 is corrupted or truncated",
    ),
    (
        "corpus_missing",
        (*TINY_LINUX, "dataset.source=DATA/nosuch"),
        "error: dataset.source='DATA/nosuch': no such file or directory",
    ),
    (
        "corpus_empty",
        (*TINY_LINUX, "dataset.source=DATA/empty_tree"),
        "error: corpus source DATA/empty_tree holds no .c/.h files",
    ),
    (
        "corpus_truncated",
        (*TINY_LINUX, "dataset.source=DATA/truncated.tar"),
        "error: cannot read corpus source DATA/truncated.tar: unexpected end of archive",
    ),
    (
        "corpus_too_small",
        (*TINY_LINUX, "dataset.source=DATA/tiny_tree"),
        "error: corpus DATA/tiny_tree (7 bytes) leaves the train split 7 characters, fewer than",
    ),
]


#: Runs ``experiments.train.main`` once per case in one interpreter (twenty fresh interpreters
#: would cost a minute of imports): argv[1] is a JSON file of cases {name, cwd, argv, md5},
#: argv[2] where to write {name: [exit status, stderr]}. ``md5`` trusts a CIFAR fixture.
_BATCH = """
import contextlib, io, json, os, sys
from torchvision.datasets import CIFAR10
from experiments.train import main

cases_file, out_file = sys.argv[1:3]
cases, results = json.load(open(cases_file)), {}
lists = (CIFAR10.train_list, CIFAR10.test_list, CIFAR10.meta)
for case in cases:
    os.chdir(case["cwd"])
    md5 = case["md5"]
    CIFAR10.train_list, CIFAR10.test_list, CIFAR10.meta = lists
    if md5:
        CIFAR10.train_list = [[n, md5[n]] for n, _ in CIFAR10.train_list]
        CIFAR10.test_list = [[n, md5[n]] for n, _ in CIFAR10.test_list]
        CIFAR10.meta = {**CIFAR10.meta, "md5": md5[CIFAR10.meta["filename"]]}
    sys.argv = ["actlab-train", *case["argv"]]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main()
            status = 0
        except SystemExit as stop:
            status = stop.code
    results[case["name"]] = [status, err.getvalue()]
with open(out_file, "w") as out:
    json.dump(results, out)
"""


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory) -> dict[str, tuple[int, str, Path]]:
    """Every BAD_INPUT case, each in its own directory: name -> (exit status, stderr, cwd)."""
    root = tmp_path_factory.mktemp("bad_input")
    data = root / "data"
    data.mkdir()
    md5 = _data_fixtures(data)
    cases = []
    for case in BAD_INPUT:
        name, overrides, _ = case
        (root / name).mkdir()
        argv = [a.replace("DATA", str(data)) for a in overrides]
        tiny = () if any(a.startswith("dataset=") and "nosuch" not in a for a in argv) else TINY
        cases.append({"name": name, "cwd": str(root / name), "argv": [*tiny, *argv]})
        cases[-1]["md5"] = md5.get(name)
    (root / "cases.json").write_text(json.dumps(cases))
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ACTLAB_DATA")}
    done = subprocess.run(
        [sys.executable, "-c", _BATCH, str(root / "cases.json"), str(root / "out.json")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((root / "out.json").read_text())
    return {name: (*results[name], root / name) for name in results}


@pytest.mark.parametrize(("name", "overrides", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_fails_in_one_line_and_leaves_no_run(name, overrides, message, bad_input_runs):
    status, stderr, cwd = bad_input_runs[name]
    data = cwd.parent / "data"
    assert status == 1, stderr
    assert stderr.splitlines() == [stderr.strip()]
    assert stderr.startswith(message.replace("DATA", str(data))), stderr
    assert not (cwd / "results").exists(), "a refused run left a run directory"


def test_crafted_cifar_pickle_is_never_unpickled(bad_input_runs):
    """torchvision unpickles CIFAR batches, but only after their md5 matched: a crafted file
    with a known name fails the check and its code never runs."""
    status, _, cwd = bad_input_runs["cifar_evil"]
    assert status == 1
    assert not (cwd.parent / "data" / "PWNED").exists()


# -- 3: faults -------------------------------------------------------------------------------

#: a run long enough to be killed at several points: checkpoints at 3, 6, ..., 15 and the end.
CHAIN = (
    "activation=prelu",
    "trainer.max_steps=16",
    "trainer.log_every=1",
    "trainer.eval_every=4",
    "trainer.checkpoint_every=3",
    "trainer.deterministic=true",
)


def _rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in ("time_s", "cpu_s")} for r in read_csv(path)]


@pytest.mark.slow
def test_sigkill_anywhere_then_reruns_equal_an_unbroken_run(cli_command, cli_env, tmp_path):
    """One run killed four times at seeded points (mid-training, mid-checkpoint write,
    mid-CSV row, right after the final checkpoint) and rerun each time ends exactly as an
    unbroken run: the same rows, none lost or duplicated, and the same weights."""
    rng = random.Random(7)
    args = (*TINY, *CHAIN)
    reference = _cli(tmp_path, cli_env, *args, "experiment_name=unbroken")
    assert reference.returncode == 0, reference.stderr
    cut = RunDir(tmp_path / "results" / "cut" / "prelu-nin-shapes-s0")
    cut_args = (*args, "experiment_name=cut")

    victim = _launch(tmp_path, cli_env, cut_args)
    _wait_for_rows(victim, cut.metrics, rng.randint(4, 7))
    victim.kill()
    assert _finish(victim).returncode == -signal.SIGKILL

    mid_save = rng.choice([12, 15])
    killed = _cli(tmp_path, cli_env, *cut_args, ACTLAB_FAULT=f"checkpoint:{mid_save}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [p.name for p in cut.checkpoint.parent.glob(".last.pt.*.tmp")], "no half-written file"
    assert torch.load(cut.checkpoint, weights_only=True)["step"] == mid_save - 3

    torn_row = rng.choice([mid_save - 2, mid_save - 1])
    killed = _cli(tmp_path, cli_env, *cut_args, ACTLAB_FAULT=f"csv:{torn_row}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not cut.metrics.read_text().endswith("\n"), "no torn row to recover from"

    killed = _cli(tmp_path, cli_env, *cut_args, ACTLAB_FAULT="after_checkpoint:16")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _summary(cut.path)["status"] == "running"

    final = _cli(tmp_path, cli_env, *cut_args)
    assert final.returncode == 0, final.stderr
    assert "resuming at step 16" in final.stdout
    unbroken = RunDir(tmp_path / "results" / "unbroken" / "prelu-nin-shapes-s0")
    assert _rows(cut.metrics) == _rows(unbroken.metrics)
    assert _rows(cut.eval) == _rows(unbroken.eval)
    weights = torch.load(cut.checkpoint, weights_only=True)["model"]
    reference_weights = torch.load(unbroken.checkpoint, weights_only=True)["model"]
    assert all(torch.equal(weights[k], v) for k, v in reference_weights.items())
    summary = _summary(cut.path)
    assert summary["status"] == "completed" and len(summary["resumed_at_steps"]) == 4
    assert not list(cut.path.rglob("*.tmp"))


@pytest.fixture(scope="module")
def interrupted(
    tmp_path_factory,
) -> tuple[Path, tuple[str, ...], dict, subprocess.CompletedProcess]:
    """A run stopped by SIGTERM through the CLI: (cwd, its arguments, environment)."""
    cwd = tmp_path_factory.mktemp("interrupted")
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ACTLAB_DATA")}
    args = (*TINY, "trainer.max_steps=400", "trainer.log_every=1", "trainer.checkpoint_every=50")
    proc = _launch(cwd, env, args)
    _wait_for_rows(proc, cwd / "results" / "default" / "relu-nin-shapes-s0" / "metrics.csv", 3)
    proc.send_signal(signal.SIGTERM)
    result = _finish(proc)
    return cwd, args, env, result


def test_sigterm_checkpoints_marks_interrupted_and_exits_nonzero(interrupted):
    cwd, _, _, result = interrupted
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert "stopped by SIGTERM at step" in result.stdout + result.stderr
    run_dir = cwd / "results" / "default" / "relu-nin-shapes-s0"
    summary = _summary(run_dir)
    assert summary["status"] == "interrupted" and summary["step"] < 400
    assert (
        torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
        == (summary["step"])
    )
    assert [int(r["step"]) for r in read_csv(run_dir / "metrics.csv")][-1] == summary["step"]


def test_ctrl_c_checkpoints_marks_interrupted_and_exits_130(cli_env, tmp_path):
    args = (*TINY, "trainer.max_steps=400", "trainer.log_every=1")
    proc = _launch(tmp_path, cli_env, args)
    run_dir = tmp_path / "results" / "default" / "relu-nin-shapes-s0"
    _wait_for_rows(proc, run_dir / "metrics.csv", 2)
    proc.send_signal(signal.SIGINT)
    assert _finish(proc).returncode == 130
    assert _summary(run_dir)["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "last.pt").exists()


def _damaged_copy(interrupted, tmp_path: Path, damage) -> tuple[Path, Path]:
    cwd, *_ = interrupted
    shutil.copytree(cwd / "results", tmp_path / "results")
    last = tmp_path / "results" / "default" / "relu-nin-shapes-s0" / "checkpoints" / "last.pt"
    damage(last)
    return tmp_path, last


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:3000]), "is corrupted or truncated"),
        (lambda p: p.write_bytes(b""), "is corrupted or truncated"),
        (lambda p: torch.save({"step": 3}, p), "is not an actlab checkpoint (no rng)"),
    ],
    ids=["truncated", "empty", "foreign"],
)
def test_damaged_checkpoint_fails_in_one_line_until_told_to_start_over(
    damage, message, interrupted, tmp_path
):
    _, args, env, _ = interrupted
    cwd, last = _damaged_copy(interrupted, tmp_path, damage)
    stamp = last.read_bytes()
    result = _cli(cwd, env, *args)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: checkpoint {last} {message}" + (result.stderr.strip().split(message, 1)[1])
    ]
    assert "trainer.resume=false" in result.stderr
    assert last.read_bytes() == stamp, "the refused checkpoint was touched"
    if message != "is corrupted or truncated" or last.stat().st_size == 0:
        return  # starting over is the same for every damage: checked once
    again = _cli(cwd, env, *args, "trainer.max_steps=5", "trainer.resume=false")
    assert again.returncode == 0, again.stderr
    assert _summary(last.parents[1])["status"] == "completed"


def test_crafted_checkpoint_is_refused_without_running_it(interrupted, tmp_path):
    """Both a plain pickle and one inside torch's zip format: weights_only refuses them."""
    marker = tmp_path / "PWNED"
    _, args, env, _ = interrupted
    for wrap in (pickle.dumps, None):
        cwd, last = _damaged_copy(interrupted, tmp_path / str(wrap is None), lambda p: None)
        payload = {"step": 1, "model": Evil(marker)}
        if wrap is None:
            torch.save(payload, last)
        else:
            last.write_bytes(wrap(payload))
        result = _cli(cwd, env, *args)
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: checkpoint {last} holds pickled objects other")
        assert len(result.stderr.splitlines()) == 1
        assert not marker.exists()


def test_disk_full_while_checkpointing_keeps_the_previous_one(tiny_config, tmp_path, monkeypatch):
    """ENOSPC half-way through the second checkpoint: the run is recorded as failed, the
    first checkpoint survives untouched with no temp file beside it, and a rerun resumes."""
    cfg = tiny_config("trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.log_every=1")
    real = experiments.checkpoint.atomic_write
    saves = []

    def atomic_write(path, write):
        saves.append(path)
        if len(saves) < 2:
            return real(path, write)

        def fill_disk(f):
            f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real(path, fill_disk)

    monkeypatch.setattr(experiments.checkpoint, "atomic_write", atomic_write)
    assert run(cfg, tmp_path) == "failed"
    rundir = RunDir(tmp_path)
    assert rundir.read_summary()["error"] == "OSError: [Errno 28] No space left on device"
    assert torch.load(rundir.checkpoint, weights_only=True)["step"] == 2
    assert [p.name for p in rundir.checkpoint.parent.iterdir()] == ["last.pt"]
    monkeypatch.undo()
    assert run(cfg, tmp_path) == "completed"
    assert rundir.read_summary()["resumed_at_steps"] == [2]
    assert [int(r["step"]) for r in read_csv(rundir.metrics)] == [1, 2, 3, 4, 5, 6]


# -- 4: a sweep with a failing, a diverging and a killed job ----------------------------------

#: six jobs by learning rate: -1 is refused at setup, 1e6 diverges, the others complete.
SWEEP_LRS = "0.01,1e6,-1,0.02,0.03,0.04"


@pytest.mark.slow
def test_sweep_survives_a_failing_a_diverging_and_a_killed_job(cli_command, cli_env, tmp_path):
    args = (
        "-m",
        *TINY,
        "trainer.max_steps=100",
        "trainer.log_every=1",
        "trainer.checkpoint_every=5",
        f"optimizer.lr={SWEEP_LRS}",
        "run_name=lr${optimizer.lr}",
    )
    runs = tmp_path / "results" / "default"
    sweep = _launch(tmp_path, cli_env, args)
    _wait_for_rows(sweep, runs / "lr0.02" / "metrics.csv", 7)  # past its checkpoint at 5
    sweep.kill()  # the whole sweep, while its fourth job trains
    assert _finish(sweep).returncode == -signal.SIGKILL
    assert not (runs / "lr-1.0").exists()
    assert {
        p.name: _summary(p)["status"] for p in runs.iterdir() if p.is_dir() and p.name != ".sweeps"
    } == {
        "lr0.01": "completed",
        "lr1000000.0": "diverged",
        "lr0.02": "running",
    }
    # train.log is appended to by every invocation (experiments.runlog), the rerun's "nothing
    # to do" included; every other file of a finished run stays as it was
    untouched = {
        name: {
            f: (runs / name / f).stat().st_mtime_ns for f in _files(runs / name) if f != "train.log"
        }
        for name in ("lr0.01", "lr1000000.0")
    }

    rerun = _cli(tmp_path, cli_env, *args)
    assert rerun.returncode == 1, "a failed job must fail the sweep at its end"
    log = rerun.stdout + rerun.stderr
    assert "lr0.01: already completed at step 100; nothing to do" in log
    assert "lr1000000.0: already diverged at step" in log
    # one refused job: its own error is the sweep's last line, said once (experiments.sweep)
    refusal = "optimizer.lr=-1.0 is out of range; must be > 0"
    assert rerun.stderr.splitlines()[-1] == f"error: {refusal}"
    assert log.count(refusal) == 1
    assert "[lr0.02] resuming at step" in log
    for name, stamps in untouched.items():
        assert {f: (runs / name / f).stat().st_mtime_ns for f in stamps} == stamps
        assert "nothing to do" in (runs / name / "train.log").read_text()
    statuses = {p.name: _summary(p)["status"] for p in runs.iterdir() if (p / ".hydra").is_dir()}
    assert statuses == {
        "lr0.01": "completed",
        "lr1000000.0": "diverged",
        "lr0.02": "completed",
        "lr0.03": "completed",
        "lr0.04": "completed",
    }
    # the refused job ends the sweep in its error; the report is written all the same
    table = {r["run"]: r["status"] for r in read_csv(runs / "report" / "runs.csv")}
    assert table == statuses

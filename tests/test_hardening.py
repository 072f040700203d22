"""Issue 17: hardening, round two. Each case of the issue, by class:

- resume validates everything it relies on before it changes any file, and refuses in one line
  naming the file and the way out (lock ownership, summary, config, checkpoint, CSV rows);
- run directories are validated before Hydra creates anything;
- the report treats every run directory as untrusted input, each parsed on its own;
- error lines name the value, key or file at fault;
- a parallel sweep's jobs are supervised (slow: real sweeps killed at random points).
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY

import experiments.components
import experiments.stopping
import experiments.train
from experiments.config import ConfigError
from experiments.rundir import RunDir, RunDirError, read_csv
from experiments.train import run

ROOT = Path(__file__).resolve().parents[1]
#: a run long enough to be stopped half-way: logs, validates and checkpoints every 2 steps.
HALFWAY = ("trainer.max_steps=8", "trainer.log_every=1", "trainer.eval_every=2")
CHECKPOINTS = ("trainer.checkpoint_every=2",)


def _row_with_text_loss(run: Path) -> str:
    """A metrics.csv row for step 9 whose train_loss is text, whatever the columns are."""
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    row = ["9", *["1.0"] * (len(header) - 1)]
    row[header.index("train_loss")] = "abc"
    return ",".join(row)


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its content hash: "nothing changed" made checkable.

    train.log is left out: it is append-only, and a refused attempt appends its own lines (the
    record of the refusal); nothing written before them changes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "train.log"
    }


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A run stopped by SIGTERM at step 4 of 8 (checkpoint at 4, rows up to 4)."""
    from hydra import compose, initialize_config_dir

    root = tmp_path_factory.mktemp("stopped") / "run"
    with initialize_config_dir(version_base="1.3", config_dir=str(experiments.train.CONFIG_DIR)):
        cfg = compose("config", overrides=[*TINY, *HALFWAY, *CHECKPOINTS])
    real_build = experiments.components.build

    def build_then_signal(cfg):
        parts = real_build(cfg)
        fetch = parts.task.train_batch

        def train_batch(s: int):
            if s == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return fetch(s)

        parts.task.train_batch = train_batch
        return parts

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experiments.components, "build", build_then_signal)
        with pytest.raises(experiments.stopping.Interrupted):
            run(cfg, root)
    torch.set_num_threads(threads)
    summary = RunDir(root).read_summary()
    assert (summary["status"], summary["step"]) == ("interrupted", 4)
    return root


@pytest.fixture
def copy_of(stopped, tmp_path):
    """``copy()``: a fresh copy of the stopped run, to damage."""

    def copy() -> RunDir:
        target = tmp_path / "run"
        shutil.copytree(stopped, target)
        return RunDir(target)

    return copy


def _refused(cfg, rundir: RunDir, *fragments: str) -> str:
    """run() refuses in one line containing ``fragments``, leaving every file as it was."""
    before = _snapshot(rundir.path)
    with pytest.raises(ValueError) as err:  # ConfigError or RunDirError: one line each
        run(cfg, rundir.path)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert _snapshot(rundir.path) == before, "a refused resume changed files"
    return message


def _set_checkpoint(rundir: RunDir, **changes) -> None:
    state = torch.load(rundir.checkpoint, weights_only=True)
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    torch.save(state, rundir.checkpoint)


# -- resume: the stopped run resumes exactly, or is refused before a file changes ------------


def test_stopped_run_resumes_with_every_check_passing(copy_of, tiny_config):
    rundir = copy_of()
    assert run(tiny_config(*HALFWAY, *CHECKPOINTS), rundir.path) == "completed"
    summary = rundir.read_summary()
    assert summary["resumed_at_steps"] == [4]
    assert [int(r["step"]) for r in read_csv(rundir.metrics)] == list(range(1, 9))


@pytest.mark.parametrize("step", [-5, 0, 1000, "4"])
def test_checkpoint_step_outside_the_budget_is_refused(step, copy_of, tiny_config):
    rundir = copy_of()
    _set_checkpoint(rundir, step=step)
    _refused(
        tiny_config(*HALFWAY, *CHECKPOINTS),
        rundir,
        f"checkpoint {rundir.checkpoint} is at step {step!r}, outside this run's budget of 1..8",
        "trainer.resume=false",
    )


def test_checkpoint_of_a_narrower_model_is_refused_before_any_file_changes(
    copy_of, tiny_config, tmp_path
):
    """Its own config copy says so first; without the copy (older checkpoints) its shapes do."""
    rundir = copy_of()
    narrow = tmp_path / "narrow"
    run(tiny_config("model.widths=[4,4,4,4,4,4,4,4]", *HALFWAY, *CHECKPOINTS), narrow)
    shutil.copy(RunDir(narrow).checkpoint, rundir.checkpoint)
    cfg = tiny_config(*HALFWAY, *CHECKPOINTS)
    _refused(cfg, rundir, f"{rundir.checkpoint} holds a run with model.widths=[4, 4, 4, 4")
    _set_checkpoint(rundir, config=None)
    _refused(cfg, rundir, f"checkpoint {rundir.checkpoint} does not fit this run", "size mismatch")


def test_missing_summary_never_clears_a_checkpoint(copy_of, tiny_config):
    rundir = copy_of()
    rundir.summary.unlink()
    _refused(
        tiny_config(*HALFWAY, *CHECKPOINTS),
        rundir,
        f"{rundir.summary} is missing but {rundir.checkpoint} exists",
        "trainer.resume=false",
    )
    rundir.checkpoint.unlink()  # rows without summary or checkpoint: still an earlier run's
    _refused(tiny_config(*HALFWAY, *CHECKPOINTS), rundir, f"but {rundir.metrics} holds rows")


def test_missing_saved_config_falls_back_to_the_checkpoints_copy(copy_of, tiny_config):
    rundir = copy_of()
    rundir.config.unlink()
    lr = tiny_config(*HALFWAY, *CHECKPOINTS).optimizer.lr  # the run's, the default recipe's
    other_lr = tiny_config(*HALFWAY, *CHECKPOINTS, "optimizer.lr=0.05")
    _refused(other_lr, rundir, f"{rundir.checkpoint} holds a run with optimizer.lr={lr}, not 0.05")
    _set_checkpoint(rundir, config=None)  # an older checkpoint: nothing left to check against
    _refused(other_lr, rundir, "keeps no copy of its config", "restore that file")


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda r: r.metrics.write_text(r.metrics.read_text().splitlines()[0] + "\n"), "no rows"),
        (lambda r: r.eval.unlink(), "eval.csv has no row for step 2"),
        (
            lambda r: r.metrics.write_text(
                "\n".join([*r.metrics.read_text().splitlines()[:2], ""])
            ),
            "metrics.csv has no row for step 2 (rows end at step 1)",
        ),
        (
            lambda r: r.eval.write_text(r.eval.read_text().replace(",val,", ",val,x", 1)),
            "line 2 of",
        ),
    ],
    ids=["metrics-emptied", "eval-deleted", "metrics-truncated", "eval-text"],
)
def test_lost_or_damaged_log_rows_are_refused(damage, fragment, copy_of, tiny_config):
    rundir = copy_of()
    damage(rundir)
    _refused(tiny_config(*HALFWAY, *CHECKPOINTS), rundir, fragment, "trainer.resume=false")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"status": "running", "step": 3,, }', "is not valid JSON (Expecting"),
        ('{"step": 3}', "has status=None, not one of completed"),
        ('{"status": "interrupted", "step": "x"}', "has step='x', not an integer"),
        (b'{"status": "\xff"}', "is not valid JSON ('utf-8' codec"),
        ("[1, 2]", "holds no JSON object"),
    ],
    ids=["json", "no-status", "step", "non-utf8", "list"],
)
def test_damaged_summary_names_its_file_and_resume_false_still_starts_over(
    text, fragment, copy_of, tiny_config
):
    rundir = copy_of()
    if isinstance(text, bytes):
        rundir.summary.write_bytes(text)
    else:
        rundir.summary.write_text(text)
    cfg = tiny_config(*HALFWAY, *CHECKPOINTS)
    message = _refused(cfg, rundir, str(rundir.summary), fragment)
    assert "trainer.resume=false" in message or "status" in fragment
    assert run(tiny_config(*HALFWAY, *CHECKPOINTS, "trainer.resume=false"), rundir.path) == (
        "completed"
    )


def test_users_tmp_files_stay_and_a_tmp_directory_does_not_block(copy_of, tiny_config):
    rundir = copy_of()
    (rundir.path / ".notes.tmp").write_text("mine")
    (rundir.path / ".x.tmp").mkdir()
    stale = rundir.path / ".summary.json.abc123.tmp"  # what a killed atomic_write leaves
    stale.write_text("{")
    assert run(tiny_config(*HALFWAY, *CHECKPOINTS), rundir.path) == "completed"
    assert (rundir.path / ".notes.tmp").read_text() == "mine"
    assert (rundir.path / ".x.tmp").is_dir()
    assert not stale.exists()


def test_a_refused_process_never_removes_a_directory_another_holds(tmp_path):
    """The first process holds the lock of its still-empty run directory; a second one,
    refused, must leave it, or a third would train in a new directory beside the first."""
    busy = RunDir(tmp_path / "results" / "exp" / "run")
    with busy.lock():
        with pytest.raises(RunDirError, match="in use by another process"), busy.lock():
            pass
        RunDir(busy.path).remove_if_empty(up_to=tmp_path / "results")
        assert busy.path.is_dir()
    RunDir(busy.path).remove_if_empty(up_to=tmp_path / "results")  # released: now it goes
    assert not (tmp_path / "results").exists()


def test_second_cli_start_is_refused_and_leaves_the_first_ones_directory(
    cli, cli_command, cli_env, tmp_path
):
    """The issue's case end to end: while a first process holds an empty run directory, a
    second start is refused in one line, and a third is refused too (not trained alongside)."""
    run_dir = tmp_path / "results" / "default" / "relu-nin-shapes-s0"
    with RunDir(run_dir).lock():  # the first process, still building its data
        for _ in range(2):
            result = cli()
            assert result.returncode == 1
            assert result.stderr.splitlines() == [
                f"error: {run_dir} is in use by another process (a sweep with duplicate run "
                "names, or the same command started twice?); wait for it to end, or stop it"
            ]
            assert run_dir.is_dir()


# -- paths: validated before anything is created --------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"ACTLAB_RESULTS": ""}, "error: paths.results_dir='' is empty (is ACTLAB_RESULTS"),
        (("paths.results_dir=",), {}, "error: paths.results_dir='' is empty"),
        (("experiment_name=../../x",), {}, "error: experiment_name='../../x' is not allowed"),
        (("-m", "experiment_name=../../x", "seed=1,2"), {}, "error: experiment_name='../../x'"),
        (("-m", "run_name=../../y", "seed=1,2"), {}, "error: run_name='../../y' is not allowed"),
    ],
    ids=["env-empty", "empty", "escape", "sweep-escape", "sweep-run-name"],
)
def test_bad_run_directories_are_refused_before_anything_exists(
    args, env, message, cli_command, cli_env, tmp_path
):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    result = subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env={**cli_env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(message), result.stderr
    assert len([line for line in result.stderr.splitlines() if "Traceback" in line]) == 0
    # nothing outside results/: not ../../x (tmp_path/a/x), not /default/<run> under root
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) in (
        ["a", "a/b"],
        ["a", "a/b", "a/b/results", "a/b/results/default", "a/b/results/default/multirun.yaml"],
    )


# -- errors name the value, key or file ------------------------------------------------------


def test_non_finite_numbers_are_refused_like_nan(tiny_config, tmp_path):
    """A range check lets inf through (inf > 0); inf trained to a 'diverged' result."""
    for override in ("optimizer.lr=inf", "optimizer.weight_decay=inf", "activation.alpha=inf"):
        with pytest.raises(ConfigError, match=rf"^{override} is not a finite number"):
            run(tiny_config("activation=elu", override), tmp_path)
    assert not list(tmp_path.iterdir())


def test_compile_without_a_cpp_compiler_is_one_line(cli, cli_env, tmp_path):
    env = {k: v for k, v in cli_env.items() if k not in ("CXX", "CC")}
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", *TINY, "trainer.compile=true"],
        cwd=tmp_path,
        env={**env, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith(
        "error: trainer.compile=true needs a C++ compiler on the CPU"
    ), result.stderr
    assert "trainer.compile=false" in result.stderr
    assert not (tmp_path / "results").exists()


# -- the report: every input untrusted --------------------------------------------------------


REPORT_CLI = runpy.run_path(str(ROOT / "scripts" / "report.py"), run_name="report_cli")


@pytest.fixture(scope="module")
def good_run(stopped, tmp_path_factory) -> Path:
    """A completed run directory to copy into studies (the stopped run, resumed)."""
    from hydra import compose, initialize_config_dir

    root = tmp_path_factory.mktemp("good") / "run"
    shutil.copytree(stopped, root)
    with initialize_config_dir(version_base="1.3", config_dir=str(experiments.train.CONFIG_DIR)):
        cfg = compose("config", overrides=[*TINY, *HALFWAY, *CHECKPOINTS])
    threads = torch.get_num_threads()
    assert run(cfg, root) == "completed"
    torch.set_num_threads(threads)
    return root


def _study(good_run: Path, root: Path, **bad: callable) -> Path:
    """A study holding the good run and one damaged copy per ``bad`` entry."""
    study = root / "study"
    shutil.copytree(good_run, study / "good")
    for name, damage in bad.items():
        shutil.copytree(good_run, study / name)
        damage(study / name)
    return study


def _config_text(run_dir: Path, text: str) -> None:
    (run_dir / ".hydra" / "config.yaml").write_text(text)


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}]\n"
    for i in range(8)
)


def test_a_malformed_run_is_skipped_in_one_line_each(good_run, tmp_path, capsys, caplog):
    study = _study(
        good_run,
        tmp_path,
        non_utf8=lambda d: (d / "summary.json").write_bytes(
            (d / "summary.json").read_bytes().replace(b'"completed"', b'"compl\xffeted"')
        ),
        text_loss=lambda d: (d / "metrics.csv").write_text(
            (d / "metrics.csv").read_text().rstrip("\n") + "\n" + _row_with_text_loss(d) + "\n"
        ),
        python_tag=lambda d: _config_text(
            d, "seed: !!python/object/apply:os.system ['touch PWNED']\n"
        ),
        alias_bomb=lambda d: _config_text(d, ALIAS_BOMB),
        summary_data=lambda d: (d / "summary.json").write_text(
            json.dumps({**json.loads((d / "summary.json").read_text()), "data": [1]})
        ),
    )
    start = time.monotonic()
    with caplog.at_level("WARNING"):
        assert REPORT_CLI["main"]([str(study)]) == 0
    assert time.monotonic() - start < 120  # the alias bomb is not expanded (329 s before)
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == 5 and all("\n" not in s for s in skipped)
    for name, fragment in {
        "non_utf8": "summary.json: not UTF-8 text",
        "text_loss": "metrics.csv: line 10: train_loss='abc' is not a number",
        "python_tag": "could not determine a constructor for the tag",
        "alias_bomb": "uses a YAML alias",
        "summary_data": "summary.json: data=[1] is not a JSON object",
    }.items():
        assert any(f"{study / name}" in s and fragment in s for s in skipped), (name, skipped)
    assert not Path("PWNED").exists() and not (study / "PWNED").exists()
    page = (study / "report" / "README.md").read_text()
    assert "good" in (study / "report" / "runs.csv").read_text() or page


def test_config_interpolations_are_never_resolved(good_run, tmp_path, monkeypatch):
    """A received run's ``${oc.env:...}`` must not copy this machine's secrets into the report."""
    monkeypatch.setenv("ACTLAB_TEST_SECRET", "s3cr3t-value")

    def plant(run_dir: Path) -> None:
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        config["run_name"] = "${oc.env:ACTLAB_TEST_SECRET}"
        config["report"] = {"deviations": ["${oc.env:ACTLAB_TEST_SECRET}"]}
        _config_text(run_dir, yaml.safe_dump(config))

    study = _study(good_run, tmp_path, planted=plant)
    assert REPORT_CLI["main"]([str(study)]) == 0
    written = "".join(p.read_text() for p in (study / "report").rglob("*.md"))
    written += (study / "report" / "runs.csv").read_text()
    assert "s3cr3t-value" not in written


def test_report_output_that_is_a_file_is_one_line(good_run, tmp_path, capsys):
    study = _study(good_run, tmp_path)
    (study / "report").write_text("not a directory")
    assert REPORT_CLI["main"]([str(study)]) == 1
    lines = capsys.readouterr().err.splitlines()  # the runs it read (info), then one error line
    assert lines[-1] == (
        f"report: {study / 'report'}: exists and is not a directory; move it away, or pass "
        "--out DIR"
    )
    assert not any("Traceback" in line for line in lines)
    out_file = tmp_path / "out.txt"
    out_file.write_text("x")
    assert REPORT_CLI["main"]([str(study), "--out", str(out_file)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith(f"report: {out_file}: exists and is not a dir")


# -- sweeps: every job supervised (slow: real parallel sweeps, killed) ------------------------


SWEEP_ARGS = (
    "-m",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
    "report=false",
    "trainer.log_every=1",
    "trainer.checkpoint_every=5",
)


def _holders(run_dir: Path) -> list[int]:
    """The processes holding ``run_dir`` open (its lock): the job training it, if any."""
    pids = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(run_dir) for fd in fd_dir.iterdir()):
                pids.append(int(fd_dir.parent.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _rows(path: Path) -> int:
    return len(read_csv(path)) if path.exists() else 0


@pytest.mark.slow
def test_a_killed_job_fails_alone_and_a_rerun_resumes_it(cli_command, cli_env, tmp_path):
    """The OOM killer's way: SIGKILL to one job's process. The other jobs run on, the lost
    one is recorded as failed, the sweep ends in one line, and a rerun resumes the lost job."""
    args = (*SWEEP_ARGS, "activation=relu,elu,prelu", "trainer.max_steps=60")
    runs = tmp_path / "results" / "default"
    victim = Path("results") / "default" / "relu-nin-shapes-s0"  # as the sweep names it
    proc = subprocess.Popen(
        cli_command(*args),
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait(lambda: _rows(tmp_path / victim / "metrics.csv") >= 7, 300, "the first job's rows")
    (pid,) = _holders(tmp_path / victim)
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: JobLost: job #0 ({victim}) was killed by SIGKILL (out of memory?); recorded "
        f"as failed in {victim / 'summary.json'}; rerun the command to resume it"
    ], err
    assert "Traceback" not in err and "Warning" not in err, err
    victim = tmp_path / victim
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["status"] == "failed" and "SIGKILL" in summary["error"]
    for other in ("elu-nin-shapes-s0", "prelu-nin-shapes-s0"):
        status = json.loads((runs / other / "summary.json").read_text())["status"]
        assert status in ("completed", "diverged")  # finished: the lost job took none with it
    again = subprocess.run(
        cli_command(*args),
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed_at_steps"][0] >= 5
    assert [int(r["step"]) for r in read_csv(victim / "metrics.csv")] == list(range(1, 61))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_sweep_checkpoints_its_jobs_and_leaves_no_orphans(
    sig, cli_command, cli_env, tmp_path
):
    args = (*SWEEP_ARGS, "activation=relu,elu", "trainer.max_steps=400")
    runs = [tmp_path / "results" / "default" / f"{a}-nin-shapes-s0" for a in ("relu", "elu")]
    proc = subprocess.Popen(
        cli_command(*args),
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait(lambda: all(_rows(r / "metrics.csv") >= 3 for r in runs), 300, "both jobs' rows")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (128 + sig if sig == signal.SIGTERM else -sig), err
    if sig == signal.SIGTERM:
        assert [line for line in err.splitlines() if line.startswith("error:")] == [
            "error: sweep stopped by SIGTERM; rerun the command to resume its jobs"
        ], err
        assert "Traceback" not in err, err
    _wait(lambda: not any(_holders(r.resolve()) for r in runs), 60, "the jobs to stop")
    for r in runs:
        summary = json.loads((r / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["step"] < 400
        assert (
            torch.load(r / "checkpoints" / "last.pt", weights_only=True)["step"]
            == (summary["step"])
        )
    if sig == signal.SIGKILL:  # the rerun resumes both (no "in use by another process")
        again = subprocess.run(
            cli_command(*args[:-1], "trainer.max_steps=400"),
            cwd=tmp_path,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert again.returncode == 0, again.stderr
        for r in runs:
            summary = json.loads((r / "summary.json").read_text())
            assert summary["status"] == "completed" and len(summary["resumed_at_steps"]) == 1


def test_an_option_added_since_a_run_resumes_only_at_its_null_default(tmp_path):
    """A run made before ``dataset.crop_size`` existed is the same run under ``crop_size:
    null`` (the behaviour it had), and a different one under ``crop_size: 24``."""
    from omegaconf import OmegaConf

    from experiments.resume import ResumeRefused, check_same_config

    saved = {"dataset": {"name": "fashion_mnist", "flip": True}}
    source = tmp_path / "config.yaml"
    added = {"dataset": {"name": "fashion_mnist", "flip": True, "crop_size": None}}
    check_same_config(saved, OmegaConf.create(added), source)
    added["dataset"]["crop_size"] = 24
    with pytest.raises(ResumeRefused, match=r"dataset.crop_size='<unset>', not 24"):
        check_same_config(saved, OmegaConf.create(added), source)

"""Entry point: ``python -m experiments.train [overrides]`` (console script ``actlab-train``).

Hydra composes the config and picks the run directory,
``${paths.results_dir}/${experiment_name}/${run_name}`` (no timestamps: the same command finds
the same directory, which is how resume works). Before anything is written the config is
validated, so a bad key or value fails in one line and leaves no run directory. Nothing is
deleted: ``trainer.resume=false`` moves an earlier run aside (``RunDir.set_aside``), and a
completed run given a larger budget continues from its checkpoint (``_extends``). Every log
line of a run also goes to its train.log (experiments.runlog).

Outcomes and exit status: ``completed``, ``diverged`` (a result, not a crash) and "already
completed" exit 0. A run that crashes while training is recorded as ``failed`` in its
summary.json; a single run then exits 1, while in a sweep (``-m``) the failure stays recorded
and the sweep goes on. A config or setup error (bad value, missing data) exits 1; in a sweep
the other jobs still run, the sweep's report is written, and the sweep exits 1 at the end.
SIGINT/SIGTERM checkpoint, mark the run ``interrupted`` and exit 128 + the signal number,
stopping a sweep.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.config import describe_error, validate
from experiments.cores import parallel_jobs, threads_for
from experiments.help import print_help
from experiments.launcher import SweepStopped
from experiments.rundir import (
    FINAL_STATUSES,
    HYDRA_CONFIG,
    OVERRIDES,
    RunDir,
    atomic_write_text,
)
from experiments.runlog import run_log

log = logging.getLogger("actlab")

#: The config tree, package data of ``experiments`` (a link to the checkout's configs/), so an
#: installed wheel runs from any directory.
CONFIG_DIR = Path(str(importlib.resources.files("experiments") / "configs"))


class RunFailed(RuntimeError):
    """A single (non-sweep) run crashed while training; its summary.json says why."""


def run(
    cfg: DictConfig,
    run_dir: str | os.PathLike[str],
    *,
    threads: int | None = None,
    hydra_files: Mapping[str, Any] | None = None,
) -> str:
    """Train ``cfg`` in ``run_dir``: start, resume from checkpoints/last.pt, or do nothing if
    the run already finished. Returns the final status.

    Raises before writing any file when the config or the setup (data, model) is bad, and
    Interrupted after checkpointing on SIGINT/SIGTERM. ``threads`` is the torch thread count
    unless ``trainer.threads`` sets one; ``hydra_files`` are extra .hydra/ files to save.
    """
    import torch  # here, not at the top: `--help` and `--cfg job` start in well under a second

    from experiments import checkpoint, resume
    from experiments.components import build
    from experiments.stopping import Interrupted
    from experiments.trainer import Trainer

    validate(cfg)
    rundir = RunDir(run_dir)
    with rundir.lock(), contextlib.ExitStack() as stack:
        rundir.remove_temporaries()
        aside = rundir.set_aside() if not cfg.trainer.resume else None
        stack.enter_context(run_log(rundir))
        if aside is not None:  # said once the new log is open, so it records it too
            log.warning(
                "%s: trainer.resume=false: the earlier run was moved to %s", rundir.path, aside
            )
        previous = resume.previous_summary(rundir, cfg)  # refuses before any file changes
        if (
            previous is not None
            and previous["status"] in FINAL_STATUSES
            and not _extends(previous, cfg)
        ):
            completed = previous["status"] == "completed"
            more = "raise trainer.max_steps to continue it; " if completed else ""
            log.info(
                "%s: already %s at step %d; nothing to do (%strainer.resume=false starts over, "
                "keeping this one aside)",
                rundir.path,
                previous["status"],
                previous["step"],
                more,
            )
            _refresh_report(rundir, cfg)
            return previous["status"]
        torch.set_num_threads(cfg.trainer.threads or threads or threads_for(1))
        parts = build(cfg)
        state = None
        if previous is not None and rundir.checkpoint.exists():
            state = checkpoint.load(rundir.checkpoint, parts.device)
            resume.check_state(state, parts, cfg, rundir)  # refuses before any file changes
            rundir.truncate_logs(state["step"])
        else:
            rundir.clear()
        _save_config(rundir, cfg, hydra_files or {})
        trainer = Trainer(parts, cfg, rundir)
        try:
            return trainer.fit(state)
        except Interrupted:
            raise
        except Exception as err:
            log.exception("[%s] failed at step %d", cfg.run_name, trainer.step)
            trainer.fail(err)
            return "failed"


def _extends(previous: Mapping[str, Any], cfg: DictConfig) -> bool:
    """A completed run whose budget was raised (max_steps / max_epochs) continues from its last
    checkpoint; a diverged one stays as it is."""
    from experiments.components import planned_steps

    if previous["status"] != "completed" or previous.get("stop_reason") == "max_time_s":
        return False
    budget = planned_steps(
        cfg.trainer.max_steps, cfg.trainer.max_epochs, previous["steps_per_epoch"]
    )
    if budget <= previous["step"]:
        return False
    log.info(
        "%s: completed at step %d; continuing to step %d", cfg.run_name, previous["step"], budget
    )
    return True


def _refresh_report(rundir: RunDir, cfg: DictConfig) -> None:
    """A finished run revisited by its study command takes the command's ``report`` block.

    The report settings (claims, published values, deviations) are analysis, not training, and
    the end-of-sweep report reads them from each run's .hydra/config.yaml: without this, a claim
    revised in a preset would be judged as it was when the runs were trained, silently.
    """
    from experiments.yamldata import read_yaml_data

    saved = read_yaml_data(rundir.config)
    report = OmegaConf.to_container(cfg, resolve=True).get("report")
    if isinstance(saved, dict) and saved.get("report") != report:
        saved["report"] = report
        atomic_write_text(rundir.config, OmegaConf.to_yaml(OmegaConf.create(saved)))
        log.info("%s: report settings updated from this command", rundir.path)


def _save_config(rundir: RunDir, cfg: DictConfig, hydra_files: Mapping[str, Any]) -> None:
    """.hydra/config.yaml (resolved) and Hydra's own files, once the run is known to start."""
    atomic_write_text(rundir.config, OmegaConf.to_yaml(cfg, resolve=True))
    for name, node in hydra_files.items():
        atomic_write_text(rundir.config.parent / name, OmegaConf.to_yaml(node))


def _threads_per_job(hydra_cfg: DictConfig) -> int:
    """CPU threads per job, by one rule under every launcher: the cores this process may use,
    shared by the jobs the launcher runs at once (``n_jobs`` under joblib, else one)."""
    n_jobs = hydra_cfg.launcher.get("n_jobs") if hydra_cfg.mode == RunMode.MULTIRUN else None
    return threads_for(parallel_jobs(n_jobs))


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_task(cfg: DictConfig) -> None:
    from experiments.stopping import Interrupted

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        status = run(
            cfg,
            run_dir,
            threads=_threads_per_job(hydra_cfg),
            hydra_files={
                HYDRA_CONFIG: {"hydra": hydra_cfg},
                OVERRIDES: hydra_cfg.overrides.task,
            },
        )
    except Interrupted as stop:
        raise SystemExit(128 + stop.signum) from None
    except Exception as err:
        RunDir(run_dir).remove_if_empty(up_to=Path(cfg.paths.results_dir))
        if multirun:  # the sweeper runs the other jobs, then raises the errors to main()
            raise
        _exit_with(err)
    if status == "failed" and not multirun:
        _exit_with(
            RunFailed(f"{cfg.run_name} failed (traceback above; see {run_dir}/summary.json)")
        )


def _exit_with(err: BaseException) -> NoReturn:
    """One line on stderr and exit 1, or the whole traceback under HYDRA_FULL_ERROR=1."""
    if _TRACEBACKS:
        raise err
    print(f"error: {describe_error(err)}", file=sys.stderr)
    raise SystemExit(1)


#: HYDRA_FULL_ERROR as the user set it; main() sets it for Hydra, so errors reach main().
_TRACEBACKS = os.environ.get("HYDRA_FULL_ERROR") == "1"


def main() -> None:
    """Run the Hydra app, reporting errors in one line (HYDRA_FULL_ERROR=1 shows tracebacks)."""
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        try:
            if {"--help", "-h"} & set(sys.argv[1:]):
                print_help(sys.argv[1:], CONFIG_DIR)
            else:
                _hydra_task()
        finally:
            sys.stdout.flush()  # here, where a closed pipe can still be handled
    except BrokenPipeError:  # `--help | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)
    except KeyboardInterrupt:
        sys.exit(130)
    except SweepStopped as stop:  # its jobs checkpointed and were marked interrupted
        print(f"error: {stop}; rerun the command to resume its jobs", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except Exception as err:
        callback = sys.modules.get("experiments.report.callback")  # loaded by a sweep's config
        if callback is not None:
            callback.report_unfinished_sweeps()
        _exit_with(err)
    finally:
        if not _TRACEBACKS:
            del os.environ["HYDRA_FULL_ERROR"]


if __name__ == "__main__":
    main()

"""Hydra callback: check the ``report`` settings before a sweep, write the report after it.

A sweep's report covers exactly that sweep's jobs, not every run that happens to share the
experiment directory (older sweeps with other settings land there too): each job writes its
run directory into ``<sweep dir>/.sweeps/<sweep id>/<job number>``, from the job's own process
(so it works under the basic, joblib and submitit launchers alike), and the report reads that
list. A job re-run by the same command (resume, or nothing left to do) is listed again.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.report.runs import ReportError
from experiments.report.settings import enabled, from_config
from experiments.rundir import RunDir, atomic_write_text

log = logging.getLogger(__name__)

#: sweeps begun in this process, (config, sweep id), whose on_multirun_end has not run. Hydra
#: raises the first job error after the last job, before on_multirun_end, so experiments.train
#: reports these itself.
_unfinished: list[tuple[DictConfig, str]] = []
#: where a sweep's job list lives, under the sweep directory.
SWEEPS_DIR = ".sweeps"


def job_list(sweep_dir: Path, sweep_id: str) -> list[Path]:
    """The run directories the sweep's jobs wrote, in job order (those that exist)."""
    folder = sweep_dir / SWEEPS_DIR / sweep_id
    entries = [e for e in folder.glob("*") if e.name.isdigit()] if folder.is_dir() else []
    entries.sort(key=lambda e: int(e.name))
    dirs = [sweep_dir / e.read_text().strip() for e in entries]
    return [d for d in dict.fromkeys(dirs) if RunDir(d).summary.is_file()]


class ReportCallback(Callback):
    """``hydra.callbacks.report: {_target_: experiments.report.callback.ReportCallback}``.

    A preset's claims and published values are checked when the sweep starts, so a typo is
    reported in one line before hours of training rather than after (Hydra never lets a
    callback stop a sweep; refusing belongs to the trainer's config validation, which can
    call ``settings.from_config``). At the end the report of the sweep directory is
    written; if that fails the reason is logged in one line and the sweep still succeeds:
    the runs are the result, and ``scripts/report.py`` can be rerun on them. A sweep in which
    a job was refused (bad value, missing data) ends in that error, which skips this callback's
    end; ``report_unfinished_sweeps`` then writes the report.
    """

    def __init__(self) -> None:
        #: set when the sweep starts; travels to the jobs with the pickled callback.
        self.sweep_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        report = config.get("report")
        try:
            from_config(OmegaConf.to_container(report) if OmegaConf.is_config(report) else report)
        except ReportError as err:
            log.error("the report at the end of this sweep will fail: %s", err)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.sweep_id = f"{stamp}-{os.getpid()}"
        _unfinished.append((config, self.sweep_id))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Add this job's run directory to its sweep's job list (single runs: nothing)."""
        if self.sweep_id is None:
            return
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        run_dir = Path(config.hydra.runtime.output_dir).resolve()
        entry = sweep_dir / SWEEPS_DIR / self.sweep_id / str(config.hydra.job.num)
        where = run_dir.relative_to(sweep_dir) if sweep_dir in run_dir.parents else run_dir
        atomic_write_text(entry, f"{where}\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _unfinished[:] = [u for u in _unfinished if u[0] is not config]
        _write(config, self.sweep_id)


def report_unfinished_sweeps() -> None:
    """Write the reports of sweeps that a job's error ended before Hydra's end callbacks."""
    while _unfinished:
        _write(*_unfinished.pop())


def _write(config: DictConfig, sweep_id: str | None) -> None:
    if OmegaConf.select(config, "hydra.sweeper.dry_run", default=False):  # nothing ran
        return
    if not enabled(config.get("report")):
        log.info("report=false: no report written")
        return
    # imported here: pandas and matplotlib would otherwise slow every CLI start by 1-2 s,
    # since Hydra instantiates callbacks for single runs too
    from experiments.report.build import write_report

    try:
        sweep_dir = Path(config.hydra.sweep.dir)
    except OmegaConfBaseException:  # refused before the sweep began (bad name or results dir)
        return
    runs = job_list(sweep_dir, sweep_id) if sweep_id else []
    if not runs:
        log.error("report not written: no run directory of sweep %s in %s", sweep_id, sweep_dir)
        return
    listed = sweep_dir / SWEEPS_DIR / str(sweep_id)
    scope = f"the {len(runs)} run(s) of sweep {sweep_id} (job list: {listed}), no other runs"
    try:
        page = write_report(runs, sweep_dir / "report", scope=scope)
    except ReportError as err:
        log.error("report not written: %s", err)
        return
    log.info("report written: %s", page)

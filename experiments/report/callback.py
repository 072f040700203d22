"""Hydra callback: check the ``report`` settings before a sweep, write the report after it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments.report.runs import ReportError
from experiments.report.settings import enabled, from_config

log = logging.getLogger(__name__)

#: sweeps begun in this process whose on_multirun_end has not run. Hydra raises the first job
#: error after the last job, before on_multirun_end, so experiments.train reports these itself.
_unfinished: list[DictConfig] = []


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

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        report = config.get("report")
        try:
            from_config(OmegaConf.to_container(report) if OmegaConf.is_config(report) else report)
        except ReportError as err:
            log.error("the report at the end of this sweep will fail: %s", err)
        _unfinished.append(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _unfinished[:] = [c for c in _unfinished if c is not config]
        _write(config)


def report_unfinished_sweeps() -> None:
    """Write the reports of sweeps that a job's error ended before Hydra's end callbacks."""
    while _unfinished:
        _write(_unfinished.pop())


def _write(config: DictConfig) -> None:
    if OmegaConf.select(config, "hydra.sweeper.dry_run", default=False):  # nothing ran
        return
    if not enabled(config.get("report")):
        log.info("report=false: no report written")
        return
    # imported here: pandas and matplotlib would otherwise slow every CLI start by 1-2 s,
    # since Hydra instantiates callbacks for single runs too
    from experiments.report.build import write_report

    sweep_dir = Path(config.hydra.sweep.dir)
    try:
        page = write_report([sweep_dir])
    except ReportError as err:
        log.error("report not written: %s", err)
        return
    log.info("report written: %s", page)

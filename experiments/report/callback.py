"""Write the report of a sweep when Hydra finishes it (``report=false`` skips it)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.report.build import write_report
from experiments.report.runs import ReportError
from experiments.report.settings import enabled

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    """``hydra.callbacks.report: {_target_: experiments.report.callback.ReportCallback}``.

    A report that cannot be written is logged in one line and never fails the sweep: the
    runs are the result, and ``scripts/report.py`` can be rerun on them.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not enabled(config.get("report")):
            log.info("report=false: no report written")
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            page = write_report([sweep_dir])
        except ReportError as err:
            log.error("report not written: %s", err)
            return
        log.info("report written: %s", page)

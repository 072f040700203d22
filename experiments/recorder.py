"""Where a run's numbers go while it trains: its CSV logs, a live-curve logger, the terminal.

The trainer decides when something is measured; this module decides where it is written, so
the loop holds no file handles, column lists or display code. The CSVs are the record (the
report reads only them); the live-curve sink (experiments.loggers) and the progress display
(experiments.progress) are for watching.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable

from omegaconf import DictConfig
from torch import nn

from experiments import loggers
from experiments.progress import Progress
from experiments.rundir import (
    DIAGNOSTICS_COLUMNS,
    CsvLog,
    RunDir,
    atomic_write_text,
    eval_columns,
    metrics_columns,
)

log = logging.getLogger("actlab")


class Recorder:
    """The open logs of run directory ``run`` for config ``cfg``, resuming at ``step``; they
    close with ``stack``."""

    def __init__(
        self,
        cfg: DictConfig,
        run: RunDir,
        metric: str,
        step: int,
        total_steps: int,
        stack: contextlib.ExitStack,
    ) -> None:
        self.run, self.label, self.metric = run, cfg.run_name, metric
        grad_norm = cfg.trainer.log_grad_norm
        self.metrics = stack.enter_context(CsvLog(run.metrics, metrics_columns(grad_norm)))
        self.evals = stack.enter_context(CsvLog(run.eval, eval_columns(metric)))
        self.sink = loggers.open_sink(cfg, run, first_step=step)
        if self.sink is not None:
            stack.callback(self.sink.close)
        self.progress = Progress(self.label, total_steps, step, stack)
        self.diagnostics: CsvLog | None = None
        if cfg.trainer.diagnostics.every:
            diagnostics = CsvLog(run.diagnostics, DIAGNOSTICS_COLUMNS)
            self.diagnostics = stack.enter_context(diagnostics)

    def training(
        self,
        step: int,
        epoch: float,
        time_s: float,
        cpu_s: float,
        train_loss: float,
        lr: float,
        grad_norm: float | None,
    ) -> None:
        """One metrics.csv row (``grad_norm`` None when it is not logged)."""
        row = dict(epoch=epoch, time_s=time_s, cpu_s=cpu_s, train_loss=train_loss, lr=lr)
        if grad_norm is not None:
            row.update(grad_norm=grad_norm)
        self.metrics.write(step=step, **row)
        if self.sink is not None:
            self.sink.log(loggers.train_values(row), step)
        self.progress.show(step, epoch, train_loss, lr)

    def evaluation(
        self, split: str, step: int, loss: float, score: float, epoch: float, time_s: float
    ) -> None:
        """One eval.csv row: the split's loss and the task's metric (``score``) at ``step``."""
        values = dict(loss=loss, **{self.metric: score})
        self.evals.write(step=step, epoch=epoch, time_s=time_s, split=split, **values)
        if self.sink is not None:
            self.sink.log({f"{split}/{k}": float(v) for k, v in values.items()}, step)
        log.info(
            "[%s] %s at step %d: loss %.4f %s %.4f",
            *(self.label, split, step, loss, self.metric, score),
        )

    def samples(
        self, text_of: Callable[[nn.Module, int], str | None], model: nn.Module, seed: int
    ) -> None:
        """The task's text samples of the trained ``model`` (``text_of`` is the task's
        ``sample_text``), if it writes any; a failure only warns: a sampling bug must not fail
        a finished run."""
        try:
            text = text_of(model, seed)
            if text is not None:
                atomic_write_text(self.run.samples, text)
        except Exception as err:
            name = self.run.samples.name
            log.warning(
                "[%s] could not write %s: %s: %s", self.label, name, type(err).__name__, err
            )

    def diagnosis(self, step: int, rows: Iterable[tuple[str, str, float]]) -> None:
        """diagnostics.csv rows (layer, measure, value) of ``step``."""
        assert self.diagnostics is not None, "diagnostics are off (trainer.diagnostics.every)"
        for layer, metric, value in rows:
            self.diagnostics.write(step=step, layer=layer, metric=metric, value=value)

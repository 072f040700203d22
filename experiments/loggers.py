"""Live curves beside the CSVs: the ``logger`` config group.

metrics.csv and eval.csv are always written (the report reads only them). ``logger=tensorboard``,
``logger=mlflow`` or ``logger=wandb`` also sends every metrics.csv row and every evaluation to
that tool, for watching runs while they train. Each tool is imported only when chosen (they are
the extras ``tensorboard``, ``mlflow``, ``wandb``), and each writes locally: TensorBoard event
files in ``<run>/tensorboard/``, an MLflow file store (``paths.results_dir``/mlruns unless
``logger.tracking_uri`` is set), W&B in offline mode in ``<run>/wandb/`` (``wandb sync`` uploads
it later). A resumed run continues the same TensorBoard directory (events at or after the
resumed step are dropped, as the CSVs are cut back), MLflow run and W&B run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from experiments.rundir import CONFIG, LIVE_METRICS_COLUMNS, RunDir, atomic_write_text


class Sink(Protocol):
    """Where the trainer's numbers go besides the CSVs."""

    def log(self, values: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoard:
    def __init__(self, run: RunDir, first_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run.tensorboard), purge_step=first_step or None)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflow:
    """One MLflow run per run directory; its id is kept in ``<run>/mlflow.json`` for resume."""

    def __init__(self, run: RunDir, cfg: DictConfig, tracking_uri: str | None) -> None:
        from mlflow.tracking import MlflowClient

        if tracking_uri is None:
            # MLflow 3 refuses its file store unless asked (it is in maintenance mode); a local
            # file store needs no server and takes parallel jobs, which SQLite would lock out
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = tracking_uri or (Path(cfg.paths.results_dir).resolve() / "mlruns").as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        record = run.mlflow_record
        if record.exists():
            self.run_id = json.loads(record.read_text())["run_id"]
        else:
            experiment = self.client.get_experiment_by_name(cfg.experiment_name)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(cfg.experiment_name)
            )
            mlrun = self.client.create_run(experiment_id, run_name=cfg.run_name)
            self.run_id = mlrun.info.run_id
            config = OmegaConf.to_container(cfg, resolve=True)
            self.client.log_dict(self.run_id, config, CONFIG)
            atomic_write_text(record, json.dumps({"tracking_uri": uri, "run_id": self.run_id}))

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.client.log_metric(self.run_id, key, value, step=step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandB:
    """W&B in offline mode by default; the run id is the run directory's, so resume appends."""

    def __init__(self, run: RunDir, cfg: DictConfig, project: str, mode: str) -> None:
        import hashlib

        import wandb

        run_id = hashlib.sha1(str(run.path.resolve()).encode()).hexdigest()[:16]
        self.run = wandb.init(
            project=project,
            name=cfg.run_name,
            group=cfg.experiment_name,
            id=run_id,
            resume="allow",
            dir=str(run.path),
            mode=mode,
            config=OmegaConf.to_container(cfg, resolve=True),
            settings=wandb.Settings(silent=True),
        )

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def open_sink(cfg: DictConfig, run: RunDir, first_step: int) -> Sink | None:
    """The chosen tool's sink, or None for ``logger=csv`` (the CSVs alone)."""
    options = cfg.logger
    if options.name == "csv":
        return None
    if options.name == "tensorboard":
        return TensorBoard(run, first_step)
    if options.name == "mlflow":
        return MLflow(run, cfg, options.tracking_uri)
    if options.name == "wandb":
        return WandB(run, cfg, options.project, options.mode)
    raise ValueError(f"logger.name={options.name!r}; choose csv, tensorboard, mlflow or wandb")


def train_values(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.csv row as the sink's keys: ``train/<column>`` (evaluations go as
    ``<split>/<loss or metric>``)."""
    return {f"train/{k}": float(row[k]) for k in LIVE_METRICS_COLUMNS if row.get(k) is not None}

"""The logger group: the CSVs always, plus TensorBoard / MLflow / W&B when chosen, each offline,
each read back and compared with metrics.csv / eval.csv; none imported unless chosen."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from experiments.rundir import RunDir, read_csv
from experiments.train import run

#: every metrics.csv row and every evaluation, as the sink names them
STEPS = (2, 4)


def _csv_values(rundir: RunDir) -> dict[str, list[tuple[int, float]]]:
    metrics = read_csv(rundir.metrics)
    out = {"train/train_loss": [(int(r["step"]), float(r["train_loss"])) for r in metrics]}
    for split in ("val", "test"):
        rows = [r for r in read_csv(rundir.eval) if r["split"] == split]
        out[f"{split}/error"] = [(int(r["step"]), float(r["error"])) for r in rows]
    return out


def test_tensorboard_events_read_back_as_metrics_csv(tiny_config, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run(tiny_config("logger=tensorboard"), tmp_path) == "completed"
    rundir = RunDir(tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    for tag, expected in _csv_values(rundir).items():
        got = events.Scalars(tag)
        assert [e.step for e in got] == [step for step, _ in expected], tag
        # event files hold float32
        assert [e.value for e in got] == pytest.approx([v for _, v in expected], rel=1e-6), tag
    assert [s for s, _ in _csv_values(rundir)["train/train_loss"]] == list(STEPS)


def test_mlflow_file_store_reads_back_as_metrics_csv(tiny_config, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cfg = tiny_config("logger=mlflow", f"paths.results_dir={tmp_path / 'results'}")
    assert run(cfg, tmp_path / "run") == "completed"
    record = json.loads((tmp_path / "run" / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    for tag, expected in _csv_values(RunDir(tmp_path / "run")).items():
        history = client.get_metric_history(record["run_id"], tag)
        assert sorted((m.step, m.value) for m in history) == expected, tag


def test_wandb_offline_run_gets_every_row_of_the_csvs(tiny_config, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    calls: list[tuple[int, dict[str, float]]] = []
    real_init = wandb.init

    def init(**kwargs):
        handle = real_init(**kwargs)
        real_log = handle.log
        monkeypatch.setattr(
            handle,
            "log",
            lambda values, step: (calls.append((step, values)), real_log(values, step=step)),
        )
        return handle

    monkeypatch.setattr(wandb, "init", init)
    assert run(tiny_config("logger=wandb"), tmp_path) == "completed"
    assert len(list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    for tag, expected in _csv_values(RunDir(tmp_path)).items():
        assert [(step, v[tag]) for step, v in calls if tag in v] == expected, tag


def test_no_logging_package_is_imported_unless_chosen(tiny_config, tmp_path):
    """The default run in a fresh interpreter: tensorboard, mlflow and wandb stay unimported."""
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from experiments.train import CONFIG_DIR, run\n"
        "from conftest import TINY\n"
        "with initialize_config_dir(version_base='1.3', config_dir=str(CONFIG_DIR)):\n"
        "    cfg = compose('config', overrides=list(TINY))\n"
        f"assert run(cfg, {str(tmp_path)!r}) == 'completed'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorboard', 'mlflow', 'wandb') or m == 'torch.utils.tensorboard'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(__import__("pathlib").Path(__file__).parent),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_bad_logger_key_is_refused_in_one_line(tiny_config):
    from experiments.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"logger\.mode='cloud' is not allowed"):
        validate(tiny_config("logger=wandb", "logger.mode=cloud"))

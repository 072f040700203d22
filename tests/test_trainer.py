"""The shared trainer in process: every unit trains both CNNs; parameter groups, schedules and
clipping against formulas; divergence, time budget, interrupt/resume, skip/restart, failure;
config validation; the run-directory and checkpoint helpers."""

from __future__ import annotations

import math
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_PLAINNET
from omegaconf import OmegaConf

import activations
import experiments.components
import experiments.trainer
from experiments import checkpoint
from experiments.components import build, planned_steps
from experiments.config import ConfigError, describe_error, validate
from experiments.modes import in_mode
from experiments.optim import build_schedule
from experiments.rundir import RunDir, RunDirError, read_csv, truncate_csv
from experiments.stopping import Interrupted
from experiments.train import run
from experiments.yamldata import read_yaml_data


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def _rows(path: Path, drop: tuple[str, ...] = ("time_s", "cpu_s")) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in drop} for row in read_csv(path)]


# -- every unit, both CNNs --------------------------------------------------------------------


#: NIN at TINY widths (8 everywhere, 10 classes): sum of k*k*c_in*c_out + c_out over its 9 convs.
TINY_NIN_PARAMS = (
    (5 * 5 * 3 + 1) * 8 + 5 * (8 * 8 + 8) + (5 * 5 * 8 + 1) * 8 + (3 * 3 * 8 + 1) * 8 + 90
)
#: PReLU's per-channel slopes after those convs: eight of 8 channels (the class maps have none:
#: model.final_activation is false by default).
TINY_NIN_PRELU_SLOPES = 8 * 8


@pytest.mark.parametrize("model", ["nin", "plainnet"])
@pytest.mark.parametrize("unit", activations.names())
def test_every_activation_trains(unit, model, tiny_config, tmp_path):
    """A few steps at a gentle rate with divergence detection off: losses stay finite."""
    arch = TINY_PLAINNET if model == "plainnet" else ()
    cfg = tiny_config(
        f"activation={unit}", "optimizer.lr=0.01", "trainer.divergence_factor=null", *arch
    )
    assert run(cfg, tmp_path) == "completed"
    rundir = RunDir(tmp_path)
    metrics = read_csv(rundir.metrics)
    assert [int(r["step"]) for r in metrics] == [2, 4]
    assert all(math.isfinite(float(r["train_loss"])) for r in metrics)
    assert [(r["step"], r["split"]) for r in read_csv(rundir.eval)] == [("4", "val"), ("4", "test")]
    initial = build(cfg).model.state_dict()  # the same seed builds the same initial weights
    final = _weights(rundir.checkpoint)
    assert any(not torch.equal(initial[k], final[k]) for k in initial)
    summary = rundir.read_summary()
    assert (summary["status"], summary["step"], summary["test"]["step"]) == ("completed", 4, 4)
    assert (summary["activation"], summary["model"]) == (unit, model)
    if model == "nin" and unit in ("relu", "prelu"):
        slopes = TINY_NIN_PRELU_SLOPES if unit == "prelu" else 0
        assert summary["num_params"] == TINY_NIN_PARAMS + slopes
        assert summary["num_activation_params"] == slopes


# -- optimizer groups, schedules, clipping ----------------------------------------------------


def test_parameter_groups_apply_the_multipliers(tiny_config):
    cfg = tiny_config(
        "activation=prelu",
        "optimizer.lr=0.1",
        "optimizer.weight_decay=1e-4",
        "optimizer.act_lr_mult=5",
        "optimizer.act_weight_decay_mult=0",
        "optimizer.bias_weight_decay=false",
    )
    parts = build(cfg)
    groups = {g["name"]: g for g in parts.optimizer.param_groups}
    names = {id(p): n for n, p in parts.model.named_parameters()}
    unit_params = {id(p) for p in activations.activation_parameters(parts.model)}
    assert unit_params and {id(p) for p in groups["activation"]["params"]} == unit_params
    assert all(names[id(p)].endswith("bias") for p in groups["biases"]["params"])
    assert all(names[id(p)].endswith("weight") for p in groups["weights"]["params"])
    assert sorted(id(p) for g in groups.values() for p in g["params"]) == sorted(names)
    lr_wd = {k: (g["lr"], g["weight_decay"]) for k, g in groups.items()}
    assert lr_wd == {"weights": (0.1, 1e-4), "biases": (0.1, 0.0), "activation": (0.5, 0.0)}


def test_adagrad_first_step_moves_every_weight_by_lr_in_its_gradients_direction(tiny_config):
    """Adagrad's rule (Duchi et al. 2011), accumulator from 0: step 1 is lr * g / |g| = lr sgn g."""
    parts = build(tiny_config("optimizer=adagrad", "optimizer.lr=0.05"))
    assert isinstance(parts.optimizer, torch.optim.Adagrad)
    params = list(parts.model.parameters())
    before = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    parts.optimizer.step()
    for p, old in zip(params, before, strict=True):
        torch.testing.assert_close(p.detach() - old, -0.05 * p.grad.sign(), atol=1e-6, rtol=0)


def test_multistep_counts_epochs_as_steps():
    schedule = build_schedule(
        {"name": "multistep", "milestones": [2, 3.5], "gamma": 0.1, "unit": "epochs"},
        steps_per_epoch=10,
        total_steps=50,
    )
    assert [schedule(s) for s in (0, 19, 20, 34, 35)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])


def test_multistep_lr_reaches_every_group_at_each_milestone(tiny_config, tmp_path):
    """Each step's lr is base x gamma^(milestones passed), per group, never compounded on the
    previous lr; metrics.csv logs the lr the logged step ran with."""
    cfg = tiny_config(
        "schedule=multistep",
        "schedule.milestones=[1,2]",
        "trainer.log_every=1",
        "activation=prelu",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "optimizer.act_lr_mult=5",
    )
    assert run(cfg, tmp_path) == "completed"
    logged = [float(r["lr"]) for r in read_csv(RunDir(tmp_path).metrics)]
    assert logged == pytest.approx([0.1, 0.01, 0.001, 0.001])
    final = torch.load(RunDir(tmp_path).checkpoint, weights_only=True)["optimizer"]
    lrs = sorted(g["lr"] for g in final["param_groups"])
    assert lrs == pytest.approx([0.001, 0.001, 0.005])


def test_exponential_matches_char_rnn_decay():
    """train.lua: after iteration i (from 1), if i % ntrain == 0 and i / ntrain >= decay_after,
    lr *= decay; iteration i uses the rate set before it, i.e. our step i - 1."""
    ntrain, after, decay, lr, expected = 7, 3, 0.97, 1.0, []
    for i in range(1, 61):
        expected.append(lr)
        if i % ntrain == 0 and i // ntrain >= after:
            lr *= decay
    schedule = build_schedule(
        {"name": "exponential", "gamma": decay, "unit": "epochs", "start": after},
        steps_per_epoch=ntrain,
        total_steps=60,
    )
    assert [schedule(i - 1) for i in range(1, 61)] == pytest.approx(expected)


def test_cosine_runs_from_one_to_the_final_multiplier():
    schedule = build_schedule(
        {"name": "cosine", "final_lr_mult": 0.1}, steps_per_epoch=5, total_steps=100
    )
    assert [schedule(s) for s in (0, 50, 100)] == pytest.approx([1.0, 0.55, 0.1])


def test_budget_is_the_smaller_of_steps_and_epochs():
    assert planned_steps(None, 2.5, 10) == 25
    assert planned_steps(7, 2.5, 10) == 7
    assert planned_steps(70, 0.01, 10) == 1


def test_gradient_clipping_bounds_one_sgd_update(tiny_config, tmp_path):
    """With plain SGD at lr 1 the first update is minus the (clipped) gradient, so clipping
    by value bounds every element and clipping by norm the whole update's norm; the logged
    grad_norm is the unclipped norm."""
    plain = ("optimizer=sgd", "optimizer.lr=1", "optimizer.momentum=0", "optimizer.weight_decay=0")
    one_step = ("trainer.max_steps=1", "trainer.log_every=1", *plain)
    initial = build(tiny_config(*one_step)).model.state_dict()

    def update(name: str, *overrides: str) -> torch.Tensor:
        assert run(tiny_config(*one_step, *overrides), tmp_path / name) == "completed"
        final = _weights(RunDir(tmp_path / name).checkpoint)
        return torch.cat([(final[k] - initial[k]).flatten() for k in initial])

    free = update("free")
    by_value = update("value", "trainer.grad_clip_value=1e-4")
    by_norm = update("norm", "trainer.grad_clip_norm=1e-3")
    assert free.abs().max() > 1e-3 and free.norm() > 1e-2
    assert by_value.abs().max() <= 1e-4 * 1.001  # float32 differences of O(1) weights
    torch.testing.assert_close(by_value, free.clamp(-1e-4, 1e-4), atol=1e-6, rtol=0)
    assert by_norm.norm() == pytest.approx(1e-3, rel=1e-3)
    logged = float(read_csv(RunDir(tmp_path / "free").metrics)[0]["grad_norm"])
    assert logged == pytest.approx(free.norm().item(), rel=1e-4)


def test_bf16_autocast_runs(tiny_config, tmp_path):
    assert run(tiny_config("trainer.precision=bf16"), tmp_path) == "completed"
    assert all(math.isfinite(float(r["train_loss"])) for r in read_csv(RunDir(tmp_path).metrics))


# -- outcomes ---------------------------------------------------------------------------------


def test_huge_learning_rate_diverges_with_its_step(tiny_config, tmp_path):
    cfg = tiny_config("optimizer.lr=1e6", "trainer.max_steps=20", "trainer.log_every=2")
    assert run(cfg, tmp_path) == "diverged"
    summary = RunDir(tmp_path).read_summary()
    assert summary["status"] == "diverged" and summary["test"] is None
    last = read_csv(RunDir(tmp_path).metrics)[-1]
    assert summary["diverged_step"] == summary["step"] == int(last["step"]) < 20
    loss = float(last["train_loss"])
    first = float(read_csv(RunDir(tmp_path).metrics)[0]["train_loss"])
    assert not math.isfinite(loss) or loss > 3 * min(first, math.log(10))


def _script_losses(losses: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next run()'s training loss at step s equal ``losses[s]`` (the real loss times
    zero plus the value, so backward still runs through the model)."""
    real_build = experiments.components.build

    def build_scripted(cfg):
        parts = real_build(cfg)
        real_loss = parts.task.training_loss

        def training_loss(model, batch, step):
            return real_loss(model, batch, step) * 0 + losses[step]

        parts.task.training_loss = training_loss
        return parts

    monkeypatch.setattr(experiments.components, "build", build_scripted)


@pytest.mark.parametrize(
    ("losses", "factor", "status", "diverged_step"),
    [
        ([2.0, 5.9, 6.0, 5.0], "3", "completed", None),  # up to factor x first: not diverged
        ([2.0, 5.0, 6.5, 1.0], "3", "diverged", 3),  # just above it, later recovering
        ([2.0, 5.0, 6.5, 1.0], "4", "completed", None),
        ([2.0, 9.0, 100.0, 1.0], "null", "completed", None),  # the check switched off
        ([2.0, math.inf, 1.0, 1.0], "null", "diverged", 2),  # but never for inf or NaN
        ([2.0, math.nan, 1.0, 1.0], "null", "diverged", 2),
    ],
)
def test_divergence_is_a_finite_loss_above_factor_times_the_first(
    losses, factor, status, diverged_step, tiny_config, tmp_path, monkeypatch
):
    _script_losses(losses, monkeypatch)
    cfg = tiny_config("trainer.log_every=1", f"trainer.divergence_factor={factor}")
    assert run(cfg, tmp_path) == status
    summary = RunDir(tmp_path).read_summary()
    assert (summary["status"], summary["diverged_step"]) == (status, diverged_step)
    logged = [float(r["train_loss"]) for r in read_csv(RunDir(tmp_path).metrics)]
    assert logged == pytest.approx(losses[: diverged_step or len(losses)], nan_ok=True)


def test_time_budget_stops_training_and_completes(tiny_config, tmp_path):
    assert run(tiny_config("trainer.max_time_s=1e-9"), tmp_path) == "completed"
    summary = RunDir(tmp_path).read_summary()
    assert (summary["step"], summary["stop_reason"]) == (1, "max_time_s")
    assert [r["step"] for r in read_csv(RunDir(tmp_path).metrics)] == ["1"]


def _signal_at(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next run() send itself SIGTERM while fetching batch ``step``."""
    real_build = experiments.components.build

    def build_then_signal(cfg):
        parts = real_build(cfg)
        fetch = parts.task.train_batch

        def train_batch(s: int):
            if s == step:
                os.kill(os.getpid(), signal.SIGTERM)
            return fetch(s)

        parts.task.train_batch = train_batch
        return parts

    monkeypatch.setattr(experiments.components, "build", build_then_signal)


def test_sigterm_checkpoints_and_resume_equals_an_unbroken_run(tiny_config, tmp_path, monkeypatch):
    """RReLU draws its slopes and dropout its masks from the global RNG: both must resume."""
    cfg = tiny_config(
        "activation=rrelu",
        "trainer.max_steps=6",
        "trainer.log_every=1",
        "trainer.deterministic=true",
    )
    assert run(cfg, tmp_path / "unbroken") == "completed"
    _signal_at(2, monkeypatch)
    with pytest.raises(Interrupted):
        run(cfg, tmp_path / "cut")
    cut = RunDir(tmp_path / "cut")
    assert (cut.read_summary()["status"], cut.read_summary()["step"]) == ("interrupted", 3)
    assert torch.load(cut.checkpoint, weights_only=True)["step"] == 3
    monkeypatch.undo()
    assert run(cfg, tmp_path / "cut") == "completed"
    assert cut.read_summary()["resumed_at_steps"] == [3]
    unbroken = RunDir(tmp_path / "unbroken")
    assert _rows(cut.metrics) == _rows(unbroken.metrics)
    assert _rows(cut.eval) == _rows(unbroken.eval)
    final, reference = _weights(cut.checkpoint), _weights(unbroken.checkpoint)
    assert all(torch.equal(final[k], reference[k]) for k in reference)


def test_resume_keeps_the_first_loss_and_the_open_logging_window(
    tiny_config, tmp_path, monkeypatch
):
    """Cut after step 3 with rows every 2 steps: the row at step 4 still averages steps 3 and
    4, and divergence is still judged against step 1's loss (2.0), not the first loss after
    the resume (0.5, which would make 1.85 > 3 x 0.5 a divergence)."""
    losses = [2.0, 1.0, 1.0, 0.5, 1.8, 1.9]
    cfg = tiny_config("trainer.log_every=2", "trainer.max_steps=6", "trainer.divergence_factor=3")
    _script_losses(losses, monkeypatch)
    _signal_at(2, monkeypatch)
    with pytest.raises(Interrupted):
        run(cfg, tmp_path)
    monkeypatch.undo()
    _script_losses(losses, monkeypatch)
    assert run(cfg, tmp_path) == "completed"
    rundir = RunDir(tmp_path)
    assert rundir.read_summary()["resumed_at_steps"] == [3]
    rows = [(int(r["step"]), float(r["train_loss"])) for r in read_csv(rundir.metrics)]
    assert rows == [(2, 1.5), (4, 0.75), (6, pytest.approx(1.85))]


def test_finished_run_takes_the_rerun_commands_report_settings(tiny_config, tmp_path, caplog):
    """A claim revised in a preset is judged on the next run of the study command: the skipped
    run's saved config takes the new ``report`` block and nothing else changes."""
    assert run(tiny_config(), tmp_path) == "completed"
    config = RunDir(tmp_path).config
    before = read_yaml_data(config)
    claim = {"text": "relu beats itself", "order": ["relu", "relu"], "metric": "final_test"}
    revised = tiny_config()
    OmegaConf.update(revised, "report", {"claims": [claim]}, force_add=True)
    with caplog.at_level("INFO", logger="actlab"):
        assert run(revised, tmp_path) == "completed"
    after = read_yaml_data(config)
    assert after["report"] == {"claims": [claim]}
    assert {k: v for k, v in after.items() if k != "report"} == {
        k: v for k, v in before.items() if k != "report"
    }
    assert "report settings updated" in caplog.text
    stamp = config.stat().st_mtime_ns
    assert run(revised, tmp_path) == "completed"
    assert config.stat().st_mtime_ns == stamp  # unchanged settings: the file is left alone


def test_finished_run_is_skipped_and_resume_false_starts_over(tiny_config, tmp_path, caplog):
    cfg = tiny_config()
    assert run(cfg, tmp_path) == "completed"
    ckpt = RunDir(tmp_path).checkpoint
    stamp = ckpt.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="actlab"):
        assert run(cfg, tmp_path) == "completed"
    assert "already completed at step 4; nothing to do" in caplog.text
    assert ckpt.stat().st_mtime_ns == stamp
    first = RunDir(tmp_path).summary.read_text()
    with caplog.at_level("INFO", logger="actlab"):
        assert run(tiny_config("trainer.resume=false"), tmp_path) == "completed"
    assert ckpt.stat().st_mtime_ns != stamp
    assert [r["step"] for r in read_csv(RunDir(tmp_path).metrics)] == ["2", "4"]
    # the replaced run is kept whole beside the new one, and one line says where
    (aside,) = tmp_path.parent.glob(f"{tmp_path.name}.replaced-*")
    assert (aside / "summary.json").read_text() == first
    assert (aside / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    assert {"metrics.csv", "eval.csv", ".hydra", "train.log"} <= {p.name for p in aside.iterdir()}
    moved = [r for r in caplog.records if "moved to" in r.getMessage()]
    assert len(moved) == 1 and str(aside) in moved[0].getMessage()
    assert "moved to" in RunDir(tmp_path).log.read_text()


def test_a_completed_run_extends_to_a_larger_budget(tiny_config, tmp_path):
    """Raising max_steps continues from the last checkpoint: the same rows and weights as a
    run given the larger budget from the start (deterministic mode, constant schedule)."""
    six = ("trainer.max_steps=6", "trainer.deterministic=true", "activation=rrelu")
    assert run(tiny_config(*six), tmp_path / "unbroken") == "completed"
    assert run(tiny_config(*six, "trainer.max_steps=4"), tmp_path / "extended") == "completed"
    extended = RunDir(tmp_path / "extended")
    assert run(tiny_config(*six), extended.path) == "completed"
    summary = extended.read_summary()
    assert (summary["step"], summary["total_steps"], summary["resumed_at_steps"]) == (6, 6, [4])
    unbroken = RunDir(tmp_path / "unbroken")
    assert _rows(extended.metrics) == _rows(unbroken.metrics)
    # the first budget's end was evaluated on val (kept) and test (replaced by step 6's)
    assert [(r["step"], r["split"]) for r in read_csv(extended.eval)] == [
        ("4", "val"),
        ("6", "val"),
        ("6", "test"),
    ]
    final, reference = _weights(extended.checkpoint), _weights(unbroken.checkpoint)
    assert all(torch.equal(final[k], reference[k]) for k in reference)
    # a smaller budget than the steps done changes nothing
    assert run(tiny_config(*six, "trainer.max_steps=5"), extended.path) == "completed"
    assert extended.read_summary()["step"] == 6


def test_train_log_holds_every_line_and_the_traceback(tiny_config, tmp_path, monkeypatch):
    assert run(tiny_config(), tmp_path / "ok") == "completed"
    text = RunDir(tmp_path / "ok").log.read_text()
    assert "step 4/4" in text and "test at step 4" in text

    def crash(self, step):
        raise ZeroDivisionError("boom in the loop")

    monkeypatch.setattr(experiments.trainer.Trainer, "train_step", crash)
    assert run(tiny_config(), tmp_path / "crash") == "failed"
    text = RunDir(tmp_path / "crash").log.read_text()
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError: boom" in text


def test_a_run_directory_refuses_a_different_config(tiny_config, tmp_path):
    assert run(tiny_config("optimizer.lr=0.1"), tmp_path) == "completed"
    with pytest.raises(ConfigError, match=r"optimizer.lr=0.1, not 0.05"):
        run(tiny_config("optimizer.lr=0.05"), tmp_path)


def test_a_refusal_names_the_group_choice_not_a_key_only_one_side_has(tiny_config, tmp_path):
    """he_fan_in has no init.mode and taylor has one; the line names init.name first."""
    assert run(tiny_config("init=he_fan_in"), tmp_path) == "completed"
    with pytest.raises(ConfigError) as refused:
        run(tiny_config("init=taylor"), tmp_path)
    message = str(refused.value)
    assert "init.name='he_fan_in', not 'taylor' (and 1 more key(s))" in message
    assert "<unset>" not in message


def test_a_crash_is_recorded_as_failed(tiny_config, tmp_path, monkeypatch):
    real_build = experiments.components.build

    def build_broken(cfg):
        parts = real_build(cfg)
        loss = parts.task.training_loss

        def training_loss(model, batch, step):
            if step == 2:
                raise RuntimeError("boom")
            return loss(model, batch, step)

        parts.task.training_loss = training_loss
        return parts

    monkeypatch.setattr(experiments.components, "build", build_broken)
    assert run(tiny_config(), tmp_path) == "failed"
    summary = RunDir(tmp_path).read_summary()
    assert (summary["status"], summary["step"], summary["error"]) == (
        "failed",
        2,
        "RuntimeError: boom",
    )


# -- config validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=-3", "trainer.max_steps=-3 is out of range; must be >= 1"),
        ("trainer.max_steps=null", "set trainer.max_steps or trainer.max_epochs"),
        ("+trainer.max_stpes=5", "unknown config key 'trainer.max_stpes'; did you mean"),
        (
            "optimizer=sgd optimizer.momentum=1.5",
            "optimizer.momentum=1.5 is out of range; must be >= 0 and < 1",
        ),
        ("schedule=multistep", None),
        ("schedule=multistep schedule.unit=epoch", "schedule.unit='epoch' is not allowed"),
        ("+model.widht=3", "unknown config key 'model.widht'; did you mean 'model.widths'?"),
        ("model.widths=abc", "model.widths='abc' has the wrong type; model 'nin' expects"),
        ("activation.name=nosuch", "unknown activation 'nosuch'"),
        ("+activation.slope=0.1", "unknown config key 'activation.slope'"),
        ("dataset.val_size=0.2", None),
        ("run_name=a/b", "run_name='a/b' is not allowed"),
    ],
)
def test_validate_names_the_fault_in_one_line(override, message, tiny_config):
    cfg = tiny_config(*override.split())
    if message is None:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_stpes=5", "unknown config key 'trainer.max_stpes'; did you mean"),
        ("activation=nosuch", "unknown activation 'nosuch'; choose from: "),
        ("trainer.max_steps=abc", "trainer.max_steps: Value 'abc' of type 'str' could not be"),
        ("optimizer=adam optimizer.momentum=0.9", "unknown config key 'optimizer.momentum'"),
    ],
)
def test_composition_errors_read_in_one_line(override, message, tiny_config):
    with pytest.raises(Exception) as err:
        tiny_config(*override.split())
    text = describe_error(err.value)
    assert message in text and "\n" not in text


# -- run directory and checkpoint helpers -----------------------------------------------------


def test_truncate_drops_later_rows_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n1,0.5\n2,0.4\n3,0.3\n4,0.")
    truncate_csv(path, 2)
    assert path.read_text() == "step,loss\n1,0.5\n2,0.4\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temp file left


def test_run_directory_lock_is_exclusive(tmp_path):
    busy = pytest.raises(RunDirError, match="in use by another process")
    with RunDir(tmp_path).lock(), busy, RunDir(tmp_path).lock():
        pass
    with RunDir(tmp_path).lock():  # released
        pass


def test_refused_run_leaves_no_empty_directories(tmp_path):
    nested = tmp_path / "results" / "exp" / "run"
    nested.mkdir(parents=True)
    (tmp_path / "keep").mkdir()
    RunDir(nested).remove_if_empty(up_to=tmp_path / "results")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    checkpoint.save(tmp_path / "c.pt", {"rng": checkpoint.rng_state()})
    draws = (torch.rand(3), random.random(), np.random.rand())
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt", torch.device("cpu"))["rng"])
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(draws[0], again[0]) and draws[1:] == again[1:]


def test_diagnostics_resume_equals_an_unbroken_run(tiny_config, tmp_path, monkeypatch):
    """diagnostics.csv is cut back with the other logs: no row lost or repeated on resume."""
    cfg = tiny_config(
        "activation=rrelu",
        "trainer.max_steps=6",
        "trainer.diagnostics.every=2",
        "trainer.deterministic=true",
    )
    assert run(cfg, tmp_path / "unbroken") == "completed"
    _signal_at(2, monkeypatch)
    with pytest.raises(Interrupted):
        run(cfg, tmp_path / "cut")
    monkeypatch.undo()
    assert run(cfg, tmp_path / "cut") == "completed"
    cut, unbroken = RunDir(tmp_path / "cut"), RunDir(tmp_path / "unbroken")
    assert _rows(cut.diagnostics) == _rows(unbroken.diagnostics)
    assert sorted({int(r["step"]) for r in read_csv(cut.diagnostics)}) == [0, 2, 4, 6]


def test_in_mode_puts_back_each_modules_own_flag_even_after_an_error():
    """A mixed model (a frozen BatchNorm in eval inside a training net) comes back mixed:
    ``model.train(was_training)`` would have switched the BatchNorm to training."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    model[1].eval()
    with in_mode(model, training=False):
        assert not any(m.training for m in model.modules())
    assert (model.training, model[0].training, model[1].training) == (True, True, False)
    with pytest.raises(RuntimeError), in_mode(model, training=True):
        assert model[1].training
        raise RuntimeError("inside the block")
    assert (model.training, model[0].training, model[1].training) == (True, True, False)

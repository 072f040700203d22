"""Per-layer diagnostics: values against direct computation, the acceptance facts at
initialisation (rectifier sparsity, sigmoid's vanishing gradients), and that measuring never
changes a run's trajectory, for CNNs and the CharGRU."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_PLAINNET
from hydra import compose, initialize_config_dir

import activations
from experiments import diagnostics
from experiments.config import ConfigError, validate
from experiments.data import build_task
from experiments.inits import initialize
from experiments.models import build_model
from experiments.rundir import RunDir, read_csv
from experiments.train import CONFIG_DIR, run


@functools.cache
def shapes_task(batch_size: int = 64):
    """Built once per batch size: the tests only read from it."""
    return build_task(
        "shapes",
        device=torch.device("cpu"),
        seed=0,
        data_dir="unused",
        batch_size=batch_size,
        eval_batch_size=50,
        train_size=200,
        val_size=20,
        test_size=20,
        preprocess="standardize",
    )


def plainnet(unit: str, depth: int, task, width: int = 8):
    torch.manual_seed(0)
    model = build_model(
        "plainnet",
        functools.partial(activations.build, unit),
        num_outputs=task.num_outputs,
        in_channels=task.in_channels,
        depth=depth,
        widths=[width, width, width],
        stage_convs=[1, 1],
        fc_widths=[width, width],
    )
    initialize(model, "he_fan_in")
    return model


def table(rows) -> dict[tuple[int, str], float]:
    return {(layer, metric): value for layer, metric, value in rows}


def test_values_match_direct_computation() -> None:
    task = shapes_task(32)
    model = plainnet("elu", 6, task)
    loss_of = diagnostics.task_loss(task)
    got = table(diagnostics.measure(model, loss_of))

    first_conv, first_unit = model.weight_layers()[0]
    outputs = []
    handle = first_unit.register_forward_hook(lambda m, i, out: outputs.append(out.detach()))
    model.eval()
    loss = loss_of(model)
    handle.remove()
    loss.backward()
    (out,) = outputs
    assert got[1, "zero_fraction"] == pytest.approx((out == 0).double().mean().item())
    assert got[1, "mean"] == pytest.approx(out.double().mean().item())
    assert got[1, "std"] == pytest.approx(out.double().std(unbiased=False).item())
    dead = (out.amax(dim=(0, 2, 3)) <= 0).double().mean().item()
    assert got[1, "dead_units"] == pytest.approx(dead)
    assert got[1, "grad_norm"] == pytest.approx(first_conv.weight.grad.norm().item(), rel=1e-5)
    layers = len(model.weight_layers())
    assert {m for (n, m) in got if n == layers} == {"grad_norm"}  # the classifier has no unit
    assert sorted({n for n, _ in got}) == list(range(1, layers + 1))


def test_relu_zeroes_half_its_inputs_at_initialisation() -> None:
    task = shapes_task()
    got = table(diagnostics.measure(plainnet("relu", 6, task), diagnostics.task_loss(task)))
    assert got[1, "zero_fraction"] == pytest.approx(0.5, abs=0.1)


def test_sigmoid_gradients_vanish_faster_than_relu() -> None:
    """At depth 20, same init: the first/last gradient-norm ratio is smaller for sigmoid."""
    task = shapes_task(32)

    def ratio(unit: str) -> float:
        model = plainnet(unit, 20, task, width=4)
        got = table(diagnostics.measure(model, diagnostics.task_loss(task)))
        return got[1, "grad_norm"] / got[len(model.weight_layers()), "grad_norm"]

    assert ratio("sigmoid") < ratio("relu")


def test_measuring_leaves_no_trace() -> None:
    """No .grad written, modes and random state as before, no hooks left behind."""
    task = shapes_task(16)
    model = plainnet("rrelu", 6, task).train()
    model.layers[0].eval()
    modes = [m.training for m in model.modules()]
    before = torch.get_rng_state()
    diagnostics.measure(model, diagnostics.task_loss(task))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters())
    assert [m.training for m in model.modules()] == modes and not modes[2]
    assert all(not m._forward_hooks for m in model.modules())


def test_dead_units_are_channels_never_positive() -> None:
    """A conv whose bias drives half its channels far negative kills exactly those."""
    task = shapes_task(16)
    model = plainnet("relu", 6, task)
    conv = model.weight_layers()[0][0]
    with torch.no_grad():
        conv.bias[:4] = -1e3
        conv.bias[4:] = 1e3
    got = table(diagnostics.measure(model, diagnostics.task_loss(task)))
    assert got[1, "dead_units"] == 0.5
    assert got[1, "zero_fraction"] == 0.5


def test_config_rejects_negative_every(tiny_config) -> None:
    with pytest.raises(ConfigError, match=r"trainer.diagnostics.every=-1"):
        validate(tiny_config("trainer.diagnostics.every=-1"))


def _trained(tiny_config, path: Path, *overrides: str) -> RunDir:
    assert run(tiny_config(*overrides), path) == "completed"
    return RunDir(path)


def _without_time(path: Path) -> list[dict[str, str]]:
    clocks = ("time_s", "cpu_s")
    return [{k: v for k, v in row.items() if k not in clocks} for row in read_csv(path)]


@pytest.mark.parametrize("unit", ["rrelu", "prelu"])
def test_diagnostics_do_not_change_training(unit, tiny_config, tmp_path) -> None:
    """Dropout and RReLU draw random numbers in training: the run with diagnostics still
    logs the same losses and ends at the same weights as the one without."""
    common = (f"activation={unit}", "trainer.max_steps=5", *TINY_PLAINNET)
    plain = _trained(tiny_config, tmp_path / "plain", *common)
    probed = _trained(tiny_config, tmp_path / "probed", *common, "trainer.diagnostics.every=2")
    assert _without_time(probed.metrics) == _without_time(plain.metrics)
    weights = [torch.load(r.checkpoint, weights_only=True)["model"] for r in (plain, probed)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not plain.diagnostics.exists()
    rows = read_csv(probed.diagnostics)
    assert sorted({int(r["step"]) for r in rows}) == [0, 2, 4, 5]
    at_start = [r for r in rows if r["step"] == "0"]
    assert {r["metric"] for r in at_start} == set(diagnostics.METRICS)
    assert {int(r["layer"]) for r in at_start if r["metric"] == "grad_norm"} == set(range(1, 7))
    assert all(math.isfinite(float(r["value"])) for r in rows)


def test_chargru_diagnostics_and_samples(tmp_path) -> None:
    """The text task: next-character loss through its own path, hidden state untouched, the
    GRU's candidate unit accumulated over time steps; samples.txt at completion."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "code.c").write_bytes(b"int x = 0;\nreturn x;\n/* a */ struct s { int y; };\n" * 40)
    common = (
        "model=chargru",
        "model.hidden_size=8",
        "activation=tlu",
        "dataset=linux",
        f"dataset.source={source}",
        "dataset.batch_size=4",
        "dataset.eval_batch_size=4",
        "dataset.seq_len=8",
        f"paths.data_dir={tmp_path / 'data'}",
        "optimizer=rmsprop",
        "optimizer.lr=0.002",
        "trainer.max_steps=5",
        "trainer.log_every=2",
        "trainer.eval_every=null",
        "trainer.checkpoint_every=null",
        "trainer.threads=1",
    )

    def compose_text(*overrides: str):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose("config", overrides=list(overrides))

    plain = _trained(compose_text, tmp_path / "plain", *common)
    probed = _trained(compose_text, tmp_path / "probed", *common, "trainer.diagnostics.every=2")
    assert _without_time(probed.metrics) == _without_time(plain.metrics)
    rows = read_csv(probed.diagnostics)
    at_start = {(int(r["layer"]), r["metric"]) for r in rows if r["step"] == "0"}
    # weight layers: (ih, hh) per GRU layer, then the decoder; each unit is reported once
    assert {n for n, m in at_start if m == "grad_norm"} == {1, 2, 3, 4, 5}
    assert {n for n, m in at_start if m == "mean"} == {1, 3}
    samples = (probed.path / "samples.txt").read_text()
    assert len(samples.encode()) >= 500


def test_task_loss_keeps_the_text_hidden_state(tmp_path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.c").write_bytes(b"int main(void) { return 0; }\n" * 60)
    task = build_task(
        "linux",
        device=torch.device("cpu"),
        seed=0,
        data_dir=tmp_path / "data",
        source=str(source),
        batch_size=4,
        eval_batch_size=4,
        seq_len=8,
    )
    model = build_model(
        "chargru",
        functools.partial(activations.build, "tanh"),
        num_outputs=task.num_outputs,
        in_channels=task.in_channels,
        hidden_size=8,
    )
    task.training_loss(model, task.train_batch(0), 0)
    state = task.state_dict()
    loss = diagnostics.task_loss(task)(model)
    inputs, targets = task.train_batch(0)
    assert torch.equal(inputs, task.probe_batch())
    expected = F.cross_entropy(model(inputs)[0].flatten(0, 1), targets.flatten())
    assert loss.item() == pytest.approx(expected.item())
    assert task.state_dict()["hidden_step"] == state["hidden_step"] == 0
    assert task.state_dict()["hidden"] is state["hidden"]


@pytest.mark.parametrize("unit", activations.names())
def test_every_unit_gives_finite_diagnostics(unit) -> None:
    """Channel-changing units (CReLU, Maxout) and stochastic ones measure like the rest."""
    task = shapes_task(8)
    model = plainnet(unit, 6, task, width=4)
    rows = diagnostics.measure(model, diagnostics.task_loss(task))
    assert {m for _, m, _ in rows} == set(diagnostics.METRICS)
    assert all(math.isfinite(v) for _, _, v in rows)

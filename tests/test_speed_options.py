"""Trainer speed options: compile (off the clock, same numbers), activation backend choice,
bf16 on CPU, cuDNN autotuning, no host-device sync inside a training step, and the training
benchmark script's smoke mode."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import activations
from experiments import precision
from experiments.components import build, seed_everything
from experiments.config import ConfigError, validate
from experiments.denormals import flush_denormals
from experiments.rundir import RunDir, read_csv
from experiments.train import run
from experiments.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _default_backend():
    """Runs set the process-wide activation backend; put the default back after each test."""
    yield
    activations.set_backend(None)
    flush_denormals(False)


def test_flush_denormal_reaches_every_openmp_thread():
    """torch.set_flush_denormal alone sets the calling thread: OpenMP's worker then computes
    its half of an elementwise op in subnormals (measured: half the products stayed non-zero)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tiny = torch.full((1 << 20,), 1e-30)
        assert bool(((tiny * 1e-10) != 0).all())  # subnormal results; also starts the worker
        flush_denormals(True)
        assert bool(((tiny * 1e-10) == 0).all())
        flush_denormals(False)
        assert bool(((tiny * 1e-10) != 0).all())
    finally:
        torch.set_num_threads(threads)


def _losses(path: Path) -> list[float]:
    return [float(r["train_loss"]) for r in read_csv(RunDir(path).metrics)]


def test_first_step_is_off_the_clock_and_recorded_as_compile_time(
    tiny_config, tmp_path, monkeypatch
):
    """A compiler that takes a second on its first call: compile_s holds it, time_s not."""
    compiled = []

    def slow_compile(model):
        def first_call_slow(*args, **kwargs):
            if not compiled:
                time.sleep(1.0)
            compiled.append(True)
            return model(*args, **kwargs)

        return first_call_slow

    monkeypatch.setattr(torch, "compile", slow_compile)
    assert run(tiny_config("trainer.compile=true"), tmp_path / "fake") == "completed"
    summary = RunDir(tmp_path / "fake").read_summary()
    assert len(compiled) == 4  # every training step went through the "compiled" model
    assert summary["compile"] is True and summary["compile_s"] >= 1.0
    assert summary["train_time_s"] < 1.0
    assert run(tiny_config(), tmp_path / "eager") == "completed"
    assert _losses(tmp_path / "fake") == _losses(tmp_path / "eager")


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tiny_config, tmp_path):
    """The real torch.compile (Inductor, tens of seconds cold on a CPU): losses agree.
    Without dropout: compiled dropout draws its masks from another random stream."""
    assert (
        run(tiny_config("model.dropout=0", "trainer.compile=true"), tmp_path / "c") == "completed"
    )
    assert run(tiny_config("model.dropout=0"), tmp_path / "eager") == "completed"
    assert _losses(tmp_path / "c") == pytest.approx(_losses(tmp_path / "eager"), rel=3e-3)


@pytest.mark.slow
def test_compiled_run_with_diagnostics_matches_the_plain_compiled_run(tiny_config, tmp_path):
    """Diagnostics hook the plain model between compiled steps: the numbers stay the same."""
    common = ("model.dropout=0", "trainer.compile=true")
    assert run(tiny_config(*common), tmp_path / "plain") == "completed"
    probed = tiny_config(*common, "trainer.diagnostics.every=2")
    assert run(probed, tmp_path / "probed") == "completed"
    assert _losses(tmp_path / "probed") == _losses(tmp_path / "plain")
    assert len(read_csv(RunDir(tmp_path / "probed").diagnostics)) > 0


def test_activation_backend_is_set_and_recorded(tiny_config, tmp_path):
    cfg = tiny_config("activation=tlu", "trainer.activation_backend=reference")
    assert run(cfg, tmp_path / "ref") == "completed"
    assert activations.get_backend() == "reference"
    assert RunDir(tmp_path / "ref").read_summary()["activation_backend"] == "reference"
    build(tiny_config("activation=tlu"))  # null: back to the library default
    assert activations.get_backend() == activations.backend.DEFAULT_BACKEND
    with pytest.raises(ConfigError, match="choose from: auto, compiled, eager, reference"):
        validate(tiny_config("trainer.activation_backend=fast"))


def test_flush_denormal_is_set_and_recorded(tiny_config, tmp_path):
    """Subnormals read as zero while it is on; the next run's build turns it off again."""
    tiny = torch.tensor([1e-40])
    assert run(tiny_config("trainer.flush_denormal=true"), tmp_path) == "completed"
    assert RunDir(tmp_path).read_summary()["flush_denormal"] is True
    assert (tiny * 1).item() == 0.0
    build(tiny_config())
    assert (tiny * 1).item() > 0.0


@pytest.mark.parametrize(("flags", "warns"), [("fpu sse2 avx2", True), ("avx2 amx_bf16", False)])
def test_bf16_on_cpu_runs_and_warns_only_without_native_bf16(
    tiny_config, tmp_path, caplog, monkeypatch, flags, warns
):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    with caplog.at_level(logging.WARNING, logger="actlab"):
        assert run(tiny_config("trainer.precision=bf16"), tmp_path / "run") == "completed"
    assert ("trainer.precision=bf16 on cpu: this CPU lacks native bf16" in caplog.text) == warns
    assert all(math.isfinite(x) for x in _losses(tmp_path / "run"))


def test_cudnn_autotunes_unless_deterministic():
    try:
        seed_everything(0, deterministic=True)
        assert not torch.backends.cudnn.benchmark
        seed_everything(0, deterministic=False)
        assert torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)


@contextlib.contextmanager
def _no_readbacks():
    """Make every tensor-to-Python conversion (a host-device sync on CUDA) raise."""
    saved = {}

    def refuse(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name} called inside a training step")

        return method

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        saved[name] = getattr(torch.Tensor, name)
        setattr(torch.Tensor, name, refuse(name))
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


@pytest.mark.parametrize("clip", ["trainer.grad_clip_norm=1.0", "trainer.grad_clip_value=1.0"])
def test_training_step_reads_nothing_back(clip, tiny_config, tmp_path):
    # SGD, the studies' optimizer: torch's single-tensor Adam reads its own step count back
    cfg = tiny_config("activation=prelu", "optimizer=sgd", clip)
    trainer = Trainer(build(cfg), cfg, RunDir(tmp_path))
    with _no_readbacks():
        for step in range(2):
            loss, grad_norm = trainer.train_step(step)
    assert math.isfinite(loss.item()) and grad_norm is not None


def _bench_train(monkeypatch):
    """scripts/bench_train.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "bench_train", ROOT / "scripts" / "bench_train.py"
    )
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_train", bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("mode", [[], ["--interleave"]])
def test_bench_train_smoke(capsys, monkeypatch, mode):
    bench = _bench_train(monkeypatch)
    rows = bench.main(["--quick", "--models", "nin", "chargru", "--acts", "relu", *mode])
    assert [(r.model, r.act) for r in rows] == [
        ("nin", "relu"),
        ("chargru", "relu"),
        ("chargru", "tanh"),  # the GRU's own unit is always measured
    ]
    assert all(rate > 0 for r in rows for rate in r.rates.values())
    assert all("bf16" in r.rates for r in rows)
    assert "channels_last" not in rows[1].rates and "eager" in rows[1].rates  # no conv maps
    assert all(r.flops > 0 for r in rows)  # counted matmul + conv work, per image or character
    out = capsys.readouterr().out
    assert "reference" in out and "eager" in out and "xbf16" in out
    assert "matmul peak" in out and "peak16" in out
    assert ("interleaved, median" in out) == bool(mode)


def test_bench_train_measures_the_bf16_peak_only_when_bf16_is_asked_for(capsys, monkeypatch):
    """Without native bf16 the bf16 peak takes minutes to time, so an fp32-only run must not
    time it; the footer then says it was not measured rather than printing 0."""
    bench = _bench_train(monkeypatch)
    timed = []
    monkeypatch.setattr(bench, "matmul_peak", lambda dtype, *a: timed.append(dtype) or 1.2)
    monkeypatch.setattr(bench, "measure", lambda args: ([], {}))
    bench.main(["--options", "channels_last"])
    assert timed == [torch.float32]
    assert "bf16 -" in capsys.readouterr().out
    bench.main(["--options", "channels_last", "bf16"])
    assert timed[1:] == [torch.float32, torch.bfloat16]
    assert "fp32 1.2 GFLOP/s, bf16 1.2" in capsys.readouterr().out


def test_rrelu_draws_leave_compiled_graphs_only_once_a_model_is_compiled(
    tiny_config, tmp_path, monkeypatch
):
    """Importing the units does not import torch._dynamo (1.7 s of every start-up); compiling a
    model first keeps RReLU's random draw out of the graph (traced, it failed in AOTAutograd)."""
    code = "import sys, activations, experiments.trainer; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    for name in ("random_bits", "draw_key"):
        monkeypatch.setattr(activations.fused, name, getattr(activations.fused, name))
    monkeypatch.setattr(torch, "compile", lambda model: model)
    cfg = tiny_config("activation=rrelu", "trainer.compile=true", "trainer.max_steps=2")
    assert run(cfg, tmp_path) == "completed"
    assert getattr(activations.fused.random_bits, "_torchdynamo_disable", False)
    assert getattr(activations.fused.draw_key, "_torchdynamo_disable", False)

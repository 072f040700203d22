"""bf16 autocast on the CPU: the fused units, a small NIN and the GRU against fp32 references.

bf16 keeps 8 significant bits (unit roundoff 2^-9 = 0.2%), so one unit's pass is checked at
0.5-1%, the GRU at 2% and a NIN's nine bf16 convs at 5%, each as the norm of the difference
over the norm of the reference; a wrong formula, a dropped term or a gradient kept in the
wrong precision is off by far more.
"""

from __future__ import annotations

import functools

import pytest
import torch

import activations
from experiments import precision
from experiments.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

#: The units with hand-written autograd (activations/fused.py) and their options.
FUSED = [("mpelu", {}), ("tlu", {"learnable": True}), ("rrelu", {})]
BACKENDS = ("reference", "eager")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("name", "options"), FUSED)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_unit_on_bf16_input_matches_float64(name, options, backend) -> None:
    """Same (bf16-representable) input and upstream gradient: the bf16 pass rounds once."""
    torch.manual_seed(0)
    unit = activations.build(name, num_channels=3, **options).eval()  # RReLU: fixed slope
    with torch.no_grad():
        for p in unit.parameters():
            p.uniform_(0.5, 1.5)  # away from the defaults, so every parameter term counts
    x = torch.randn(4, 3, 5, 6).to(torch.bfloat16)
    g = torch.randn(4, 3, 5, 6).to(torch.bfloat16)

    ref_unit = unit.double()
    x64 = x.double().requires_grad_()
    ref_unit(x64).backward(g.double())
    ref_y = ref_unit(x64.detach())
    ref = {"x": x64.grad, **grads(ref_unit)}
    ref_unit.zero_grad()
    unit = ref_unit.float()

    xb = x.clone().requires_grad_()
    with activations.use_backend(backend), torch.autocast("cpu", dtype=torch.bfloat16):
        y = unit(xb)
        y.backward(g)
    assert y.dtype == torch.bfloat16 and xb.grad.dtype == torch.bfloat16
    assert rel_err(y, ref_y) < 0.005  # measured: 0.03-0.11%
    assert rel_err(xb.grad, ref["x"]) < 0.005
    for key, value in grads(unit).items():
        assert value.dtype == torch.float32, key
        assert rel_err(value, ref[key]) < 0.01, key


def _tiny_nin(name: str, options: dict) -> torch.nn.Module:
    act = functools.partial(activations.build, name, **options)
    return build_model(
        "nin",
        act,
        num_outputs=10,
        in_channels=1,
        widths=[16, 16, 8, 16, 16, 16, 16, 16],
        dropout=0.0,
        final_activation=False,
    )


@pytest.mark.parametrize(("name", "options"), [("relu", {}), *FUSED])
def test_nin_loss_and_gradients_under_autocast_match_fp32(name, options) -> None:
    """A 1-channel 28x28 NIN step (as on Fashion-MNIST), bf16 convs and units vs fp32."""
    torch.manual_seed(0)
    model = _tiny_nin(name, options).eval()  # eval: RReLU's slope is then deterministic
    x, y = torch.randn(8, 1, 28, 28), torch.randint(10, (8,))
    loss32 = torch.nn.functional.cross_entropy(model(x), y)
    loss32.backward()
    ref = grads(model)
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x.to(memory_format=torch.channels_last))
        loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert logits.dtype == torch.bfloat16
    assert abs(loss.item() - loss32.item()) < 0.02 * loss32.item()
    got = grads(model)
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key].dtype == torch.float32
        assert rel_err(got[key], ref[key]) < 0.05, key  # measured: at most 3.8%


@pytest.mark.parametrize("variant", ["pytorch", "charrnn"])
@pytest.mark.parametrize(("name", "options"), [("tanh", {}), ("tlu", {"learnable": True})])
def test_gru_logits_and_gradients_under_autocast_match_fp32(variant, name, options) -> None:
    torch.manual_seed(0)
    act = functools.partial(activations.build, name, **options)
    model = build_model(
        "chargru", act, num_outputs=11, in_channels=11, hidden_size=16, variant=variant
    )
    x, target = torch.randint(11, (12, 3)), torch.randint(11, (12, 3))
    logits32, _ = model(x)
    torch.nn.functional.cross_entropy(logits32.flatten(0, 1), target.flatten()).backward()
    ref = grads(model)
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, hidden = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
    loss.backward()
    assert hidden.dtype == torch.float32  # the recurrence stays in the weights' precision
    assert rel_err(logits.float(), logits32) < 0.02
    got = grads(model)
    assert got.keys() == ref.keys()
    for key in ref:
        assert rel_err(got[key], ref[key]) < 0.02, key  # measured: at most 0.7%


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n", True),
        ("processor\t: 0\nflags\t\t: fpu avx512f amx_tile amx_bf16\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n", False),
        ("model name\t: avx512_bf16 in a name is no flag\n", False),
        ("", False),
    ],
)
def test_native_bf16_reads_the_cpu_flags(cpuinfo: str, native: bool) -> None:
    assert precision.native_bf16(cpuinfo) is native


def test_no_warning_for_fp32_or_cuda() -> None:
    assert precision.precision_warning("fp32", torch.device("cpu")) is None
    assert precision.precision_warning("bf16", torch.device("cuda")) is None


@pytest.mark.parametrize(("flags", "expected"), [("avx2 avx512_bf16", "bf16"), ("avx2", "fp32")])
def test_auto_precision_is_bf16_only_on_a_native_cpu(
    tiny_config, tmp_path, monkeypatch, flags, expected
) -> None:
    from experiments.rundir import RunDir
    from experiments.train import run

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"flags\t\t: {flags}\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    assert precision.resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert precision.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert run(tiny_config("trainer.precision=auto"), tmp_path / "run") == "completed"
    assert RunDir(tmp_path / "run").read_summary()["precision"] == expected

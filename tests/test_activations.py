"""The activation library against independent references: formulas written here with math,
torch.autograd.gradcheck, the plain-autograd twins, and parameter counts."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import scipy.stats
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import activations
from activations import backend, fused
from activations.registry import ACTIVATIONS

ROOT = Path(__file__).resolve().parents[1]
XS = [-3.0, -1.0, -0.5, 0.0, 0.5, 2.0]
#: every unit with a fast path, read from the classes so a new one cannot go untested
FAST = [n for n in activations.names() if getattr(ACTIVATIONS.get(n), "fast_path", False)]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _noisy_eval(x: float, h: float, u: float, alpha: float, c: float, p: float = 1.0) -> float:
    """Gulcehre et al. 2016 Algorithm 1 at evaluation: the half-normal noise at its mean."""
    sigma = c * (_sigmoid(p * (h - u)) - 0.5) ** 2
    d = -math.copysign(1.0, x) * math.copysign(1.0, 1.0 - alpha) if x != 0 else 0.0
    return alpha * h + (1 - alpha) * u + d * sigma * math.sqrt(2 / math.pi)


SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717

#: each unit at its defaults, written from its definition (rrelu: evaluation mode).
FORMULAS = {
    "identity": lambda x: x,
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
    "relu": lambda x: max(x, 0.0),
    "selu": lambda x: SELU_LAMBDA * (x if x > 0 else SELU_ALPHA * math.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * math.tanh(math.log1p(math.exp(x))),
    "softplus": lambda x: math.log1p(math.exp(x)),
    "lrelu": lambda x: x if x >= 0 else 0.01 * x,
    "prelu": lambda x: x if x >= 0 else 0.25 * x,
    "rrelu": lambda x: x if x >= 0 else x * 2.0 / (3.0 + 8.0),
    "elu": lambda x: x if x > 0 else math.expm1(x),
    "brelu": lambda x: min(max(x, 0.0), 6.0),
    "relu6": lambda x: min(max(x, 0.0), 6.0),
    "mpelu": lambda x: x if x > 0 else 0.25 * (math.exp(x) - 1.0),
    "tlu": lambda x: x if x >= 0 else math.tanh(x),
    "hard_tanh": lambda x: min(max(x, -1.0), 1.0),
    "hard_sigmoid": lambda x: min(max(0.25 * x + 0.5, 0.0), 1.0),
    "noisy_hard_tanh": lambda x: _noisy_eval(x, min(max(x, -1.0), 1.0), x, 1.15, 0.5),
    "noisy_hard_sigmoid": lambda x: _noisy_eval(
        x, min(max(0.25 * x + 0.5, 0.0), 1.0), 0.25 * x + 0.5, 1.1, 0.15
    ),
    "noisy_relu": lambda x: max(x, 0.0),
}
CHANNEL_CHANGING = {"crelu", "maxout"}

# (unit, params) of every fast-path configuration: per-channel and shared parameters.
FAST_CASES = [
    ("mpelu", {}),
    ("mpelu", {"channelwise": False}),
    ("tlu", {}),
    ("tlu", {"learnable": True}),
    ("tlu", {"learnable": True, "channelwise": False}),
    ("rrelu", {}),
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("prelu", {}),
    ("prelu", {"channelwise": False}),
    ("prelu", {"clip": True, "init": 1.5}),  # slopes 1.6-1.9 clipped to 1 in the forward
]
# (channel_dim, shape, channels_last memory format)
LAYOUTS = [
    (1, (2, 3, 4, 5), False),
    (1, (2, 3, 4, 5), True),
    (-1, (4, 2, 3), False),
    (1, (5, 3), False),
]


def _away_from_kinks(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """float64 values in [-4, 8] at least 0.05 from the kinks at -2, -1, 0, 1, 2 and 6."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x * 12 - 4
    for kink in (-2.0, -1.0, 0.0, 1.0, 2.0, 6.0):
        near = (x - kink).abs() < 0.05
        x = torch.where(near, x + 0.1, x)
    return x


def _unit(name: str, channels: int, channel_dim: int = 1, **params: object) -> nn.Module:
    """A float64 unit whose parameters are moved off their defaults, so channels differ."""
    unit = activations.build(name, num_channels=channels, channel_dim=channel_dim, **params)
    unit = unit.double()
    with torch.no_grad():
        for i, p in enumerate(unit.parameters()):
            p.add_(torch.linspace(0.1, 0.4, p.numel(), dtype=p.dtype) * (i + 1))
    return unit


def _seeded(unit: activations.Activation, seed: int = 0) -> activations.Activation:
    # the units that draw noise (rrelu, the noisy family) draw from it; the others ignore it
    unit.generator = torch.Generator().manual_seed(seed)
    return unit


def _run(
    unit: activations.Activation, x: torch.Tensor, g: torch.Tensor, name: str
) -> list[torch.Tensor]:
    """Output, input gradient and parameter gradients of one forward+backward on ``name``."""
    for p in unit.parameters():
        p.grad = None
    xr = x.detach().clone().requires_grad_()
    with activations.use_backend(name):
        y = _seeded(unit)(xr)
    y.backward(g)
    return [y.detach(), xr.grad, *(p.grad for p in unit.parameters())]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------
# Definitions


def test_every_fast_path_is_checked_against_its_twin():
    assert {"elu", "mpelu", "prelu", "rrelu", "tlu"} <= set(FAST)
    assert {name for name, _ in FAST_CASES} == set(FAST)


def test_every_registered_unit_has_a_formula_here():
    assert set(activations.names()) == set(FORMULAS) | CHANNEL_CHANGING


@pytest.mark.parametrize("backend_name", ["reference", "eager"])
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_values_at_defaults_match_the_definition(name, backend_name):
    unit = activations.build(name, num_channels=1).double().eval()
    x = torch.tensor(XS, dtype=torch.float64).view(-1, 1)
    with activations.use_backend(backend_name):
        y = unit(x).view(-1)
    expected = torch.tensor([FORMULAS[name](v) for v in XS], dtype=torch.float64)
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=0)


#: (unit, non-default parameters, the formula with them): every option must reach the formula.
FORMULAS_WITH_PARAMS = [
    ("elu", {"alpha": 0.5}, lambda x: x if x > 0 else 0.5 * math.expm1(x)),
    ("lrelu", {"slope": 0.2}, lambda x: x if x >= 0 else 0.2 * x),
    ("brelu", {"n": 2.0}, lambda x: min(max(x, 0.0), 2.0)),
    ("prelu", {"init": 0.125}, lambda x: x if x >= 0 else 0.125 * x),  # exact in float32
    ("rrelu", {"lower": 2.0, "upper": 4.0}, lambda x: x if x >= 0 else x / 3.0),
    ("mpelu", {"alpha": 0.5, "beta": 2.0}, lambda x: x if x > 0 else 0.5 * math.expm1(2 * x)),
    ("tlu", {"alpha": 0.5}, lambda x: x if x >= 0 else 0.5 * math.tanh(x)),
]


@pytest.mark.parametrize("backend_name", ["reference", "eager"])
@pytest.mark.parametrize(
    "name,params,formula", FORMULAS_WITH_PARAMS, ids=[c[0] for c in FORMULAS_WITH_PARAMS]
)
def test_values_with_parameters_match_the_definition(name, params, formula, backend_name):
    unit = activations.build(name, num_channels=1, **params).double().eval()
    x = torch.tensor(XS, dtype=torch.float64).view(-1, 1)
    with activations.use_backend(backend_name):
        y = unit(x).view(-1)
    expected = torch.tensor([formula(v) for v in XS], dtype=torch.float64)
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=0)


def test_crelu_values_and_shapes():
    x = torch.tensor(XS, dtype=torch.float64).view(-1, 1)
    y = activations.build("crelu")(x)
    expected = [[max(v, 0.0), max(-v, 0.0)] for v in XS]
    torch.testing.assert_close(y, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)
    assert activations.build("crelu").out_channels(3) == 6
    assert activations.build("crelu")(torch.randn(2, 3, 4, 5)).shape == (2, 6, 4, 5)
    assert activations.build("crelu", channel_dim=-1)(torch.randn(4, 2, 3)).shape == (4, 2, 6)


def test_maxout_values_and_shapes():
    # channel j of the output is the max of input channels j and j + C/k
    x = torch.tensor([XS, XS[::-1]], dtype=torch.float64).T  # (6, 2): pairs (v, reversed v)
    y = activations.build("maxout", num_channels=2)(x)
    expected = [[max(a, b)] for a, b in zip(XS, XS[::-1], strict=True)]
    torch.testing.assert_close(y, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)
    x4 = torch.randn(2, 6, 4, 5)
    y4 = activations.build("maxout", num_channels=6, k=3)(x4)
    assert y4.shape == (2, 2, 4, 5)
    torch.testing.assert_close(y4, torch.maximum(torch.maximum(x4[:, :2], x4[:, 2:4]), x4[:, 4:]))
    assert activations.build("maxout", channel_dim=-1)(torch.randn(4, 2, 6)).shape == (4, 2, 3)
    assert activations.build("maxout", k=3).out_channels(12) == 4


def test_maxout_k_not_dividing_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"k=4 does not divide the 6 input channels"):
        activations.build("maxout", num_channels=6, k=4)
    unit = activations.build("maxout", k=4)  # channel count unknown until forward
    with pytest.raises(ValueError, match=r"k=4 does not divide the 6 input channels"):
        unit(torch.randn(2, 6))
    with pytest.raises(ValueError, match=r"k=4 does not divide the 7"):
        unit.out_channels(7)


def test_mpelu_special_cases_are_relu_and_elu():
    x = torch.tensor(XS, dtype=torch.float64).view(-1, 1)
    relu_like = activations.build("mpelu", num_channels=1, alpha=0.0).double()
    elu_like = activations.build("mpelu", num_channels=1, alpha=1.0, beta=1.0).double()
    torch.testing.assert_close(relu_like(x), F.relu(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(elu_like(x), F.elu(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend_name", ["reference", "eager"])
def test_mpelu_input_gradient_at_exactly_zero_is_alpha_times_beta(backend_name):
    """The authors' Caffe layer takes the negative branch for x <= 0 (docs/papers.md
    §1: dL/dx = g beta (y + alpha) there), so at x = 0, common after a max-pooled rectifier,
    the slope is alpha_c beta_c, not 1. gradcheck cannot see this: it stays off the kink."""
    unit = activations.build("mpelu", num_channels=3).double()
    with torch.no_grad():
        unit.alpha.copy_(torch.tensor([0.25, 0.5, 1.5]))
        unit.beta.copy_(torch.tensor([1.0, 2.0, 0.5]))
    x = torch.zeros(2, 3, 4, dtype=torch.float64)
    x[:, :, 0] = 0.75  # a positive neighbour in every channel takes the identity's slope 1
    x.requires_grad_()
    with activations.use_backend(backend_name):
        unit(x).sum().backward()
    slope_at_zero = (unit.alpha * unit.beta).detach().view(1, 3, 1).expand(2, 3, 3)
    assert torch.equal(x.grad[:, :, 1:], slope_at_zero)
    assert torch.equal(x.grad[:, :, 0], torch.ones(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,params", FAST_CASES, ids=lambda v: str(v))
def test_fast_path_and_twin_agree_exactly_at_zero(name, params, training):
    """The kink itself, which the twin test above steps around: the small-tensor (reference)
    and large-tensor (fast) paths of one run must not give different gradients there."""
    unit = _unit(name, 3, **params).train(training)
    x = torch.zeros(2, 3, 4, dtype=torch.float64)
    x[:, :, 0], x[:, :, 1] = 0.5, -0.5
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for ref, fast in zip(_run(unit, x, g, "reference"), _run(unit, x, g, "eager"), strict=True):
        torch.testing.assert_close(fast, ref, atol=1e-12, rtol=1e-12)


def test_slopes_for_inits():
    build = activations.build
    assert build("relu").he_slope == 0.0
    assert build("lrelu", slope=0.2).he_slope == 0.2
    assert build("prelu", num_channels=3, init=0.1).he_slope == 0.1
    assert build("rrelu", lower=3, upper=8).he_slope == 2 / 11
    assert build("brelu").he_slope == 0.0
    assert build("relu6").taylor_slope == 0.0
    assert build("elu", alpha=0.5).taylor_slope == 0.5
    assert build("mpelu", num_channels=3, alpha=0.5, beta=2.0).taylor_slope == 1.0
    assert build("tlu", alpha=0.7).taylor_slope == 0.7
    assert build("lrelu", slope=0.2).taylor_slope == 0.2  # default: the He slope


# ----------------------------------------------------------------------------------------------
# Parameters, registry, configs


def test_per_channel_parameters_and_initial_values():
    prelu = activations.build("prelu", num_channels=5)
    assert prelu.weight.shape == (5,) and torch.all(prelu.weight == 0.25)
    mpelu = activations.build("mpelu", num_channels=5)
    assert mpelu.alpha.shape == mpelu.beta.shape == (5,)
    assert torch.all(mpelu.alpha == 0.25) and torch.all(mpelu.beta == 1.0)
    tlu = activations.build("tlu", num_channels=5, learnable=True)
    assert tlu.alpha.shape == (5,) and torch.all(tlu.alpha == 1.0)
    assert activations.build("prelu", num_channels=5, channelwise=False).weight.shape == (1,)
    assert activations.build("mpelu", channelwise=False).alpha.shape == (1,)
    fixed = activations.build("tlu", alpha=0.5)  # not learnable: a buffer, no parameter
    assert list(fixed.parameters()) == [] and float(fixed.alpha) == 0.5


LEARNABLE = [
    ("prelu", {}),
    ("mpelu", {}),
    ("tlu", {"learnable": True}),
    ("noisy_hard_tanh", {}),
    ("noisy_hard_sigmoid", {}),
]


@pytest.mark.parametrize("name,params", LEARNABLE)
def test_channelwise_without_num_channels_is_a_clear_error(name, params):
    with pytest.raises(ValueError, match="needs num_channels"):
        activations.build(name, **params)


def test_channel_count_mismatch_is_a_clear_error():
    unit = activations.build("mpelu", num_channels=3)
    with pytest.raises(ValueError, match="3 per-channel parameters but the input has 4 channels"):
        unit(torch.randn(2, 4, 5))


def test_activation_parameters_are_reachable_as_a_group():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        activations.build("prelu", num_channels=4),
        nn.Conv2d(4, 4, 1),
        activations.build("mpelu", num_channels=4),
        activations.build("tlu", num_channels=4, learnable=True),
        activations.build("tlu"),
        activations.build("relu"),
    )
    got = {id(p) for p in activations.activation_parameters(model)}
    expected = {id(model[1].weight), id(model[3].alpha), id(model[3].beta), id(model[4].alpha)}
    assert got == expected


def test_unknown_names_and_parameters_fail_with_the_valid_choices():
    with pytest.raises(ValueError, match=r"unknown activation 'swishh'.*mpelu.*relu"):
        activations.build("swishh")
    with pytest.raises(ValueError, match=r"no parameter 'slop'; valid: slope"):
        activations.build("lrelu", slop=0.1)
    with pytest.raises(ValueError, match="0 < lower <= upper"):
        activations.build("rrelu", lower=8, upper=3)


def test_config_yaml_per_unit_carries_every_default():
    files = sorted((ROOT / "configs" / "activation").glob("*.yaml"))
    assert {f.stem for f in files} == set(activations.names())
    for f in files:
        text = f.read_text()
        assert text.startswith("# "), f"{f.name} lacks its one-line source comment"
        cfg = yaml.safe_load(text)
        name = cfg.pop("name")
        assert name == f.stem
        assert cfg == activations.parameters_of(name), f.name


# ----------------------------------------------------------------------------------------------
# Gradients


def _gradcheck(unit: activations.Activation, x: torch.Tensor) -> None:
    """gradcheck in float64 for the input and every learnable parameter of ``unit``."""
    names = [n for n, p in unit.named_parameters() if p.requires_grad]
    params = [p.detach().clone().requires_grad_() for n, p in unit.named_parameters()]

    def f(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(_seeded(unit), dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x.requires_grad_(), *params))


@pytest.mark.parametrize(
    "name,backend_name",
    [(n, "reference") for n in activations.names()] + [(n, "eager") for n in FAST],
)
def test_gradcheck_input_and_parameters(name, backend_name):
    unit = _unit(name, channels=6, **({"learnable": True} if name == "tlu" else {}))
    with activations.use_backend(backend_name):
        _gradcheck(unit.eval(), _away_from_kinks((2, 6, 3)))
        if unit.train().draws_random:  # training mode: the same draws on every gradcheck call
            _gradcheck(unit.train(), _away_from_kinks((2, 6, 3)))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda v: str(v))
@pytest.mark.parametrize("name,params", FAST_CASES, ids=lambda v: str(v))
def test_fast_path_equals_its_twin(name, params, layout):
    channel_dim, shape, channels_last = layout
    unit = _unit(name, shape[channel_dim], channel_dim, **params).train()
    x = _away_from_kinks(shape) - 2
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    g = torch.randn(shape, dtype=torch.float64)
    ref = _run(unit, x, g, "reference")
    fast = _run(unit, x, g, "eager")
    assert len(ref) == len(fast) == 2 + len(list(unit.parameters()))
    for r, f in zip(ref, fast, strict=True):
        torch.testing.assert_close(f, r, atol=1e-12, rtol=1e-12)
    if channels_last:
        assert fast[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["mpelu", "tlu", "elu"])
def test_no_nan_gradients_where_exp_would_overflow(name):
    unit = activations.build(name, num_channels=1, **({"learnable": True} if name == "tlu" else {}))
    for backend_name in ("reference", "eager"):
        x = torch.tensor([[200.0], [-200.0], [0.0]], requires_grad=True)
        with activations.use_backend(backend_name):
            unit(x).sum().backward()
        grads = [x.grad, *(p.grad for p in unit.parameters())]
        assert all(torch.isfinite(t).all() for t in grads), backend_name


@pytest.mark.parametrize("name", FAST)
def test_autocast_keeps_input_dtype_and_fp32_parameter_grads(name):
    unit = activations.build(name, num_channels=3, **({"learnable": True} if name == "tlu" else {}))
    x32 = torch.randn(2, 3, 4, 5).to(torch.bfloat16).float()
    with torch.no_grad():
        expected = _seeded(unit)(x32)
    for backend_name in ("reference", "eager"):
        x = x32.to(torch.bfloat16).requires_grad_()
        with activations.use_backend(backend_name), torch.autocast("cpu", dtype=torch.bfloat16):
            y = _seeded(unit)(x)
        assert y.dtype == torch.bfloat16, backend_name
        torch.testing.assert_close(y.float(), expected, atol=0.03, rtol=0.02)
        y.float().sum().backward()
        assert x.grad.dtype == torch.bfloat16
        for p in unit.parameters():
            assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
            p.grad = None


# ----------------------------------------------------------------------------------------------
# RReLU's randomness


def test_rrelu_evaluation_slope_is_exactly_two_over_lower_plus_upper():
    for lower, upper in [(3.0, 8.0), (2.0, 5.0)]:
        unit = activations.build("rrelu", lower=lower, upper=upper).double().eval()
        x = torch.tensor([-1.0, -2.5, 3.0], dtype=torch.float64)
        for backend_name in ("reference", "eager"):
            with activations.use_backend(backend_name):
                y = unit(x)
            assert y[0].item() == -2.0 / (lower + upper)
            assert y[1].item() == -2.5 * (2.0 / (lower + upper))
            assert y[2].item() == 3.0


@pytest.mark.parametrize("backend_name", ["reference", "eager"])
def test_rrelu_training_draws_a_uniform_in_lower_upper(backend_name):
    unit = activations.build("rrelu").train()
    x = -torch.ones(10**6, 1, dtype=torch.float64)
    torch.manual_seed(0)
    with activations.use_backend(backend_name):
        slopes = unit(x).view(-1) / x.view(-1)
        again = unit(x).view(-1) / x.view(-1)
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3
    a = 1 / slopes
    assert abs(a.mean().item() / 5.5 - 1) < 0.005
    assert a.min() < 3.01 and a.max() > 7.99  # spans the range
    assert not torch.equal(slopes, again)  # fresh draws every forward, per element


@pytest.mark.parametrize("name", activations.names())
def test_over_sequence_steps_equal_one_call_over_the_sequence(name):
    """The contract the GRU's backward relies on: stepping through a sequence with
    over_sequence gives what one forward over the whole sequence gives from the same generator
    state, for every registered unit in training mode (random ones included)."""
    unit = activations.build(name, num_channels=4, channel_dim=-1).double().train()
    if unit.out_channels(4) != 4:  # crelu, maxout: no GRU candidate
        pytest.skip(f"{name} changes the channel count")
    seq = torch.randn(5, 3, 4, dtype=torch.float64)
    torch.manual_seed(1)
    step = unit.over_sequence(seq)
    steps = torch.stack([step(x, t) for t, x in enumerate(seq)])
    torch.manual_seed(1)
    torch.testing.assert_close(steps, unit(seq), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["prelu", "mpelu", "tlu"])
def test_over_sequence_checks_once_and_picks_the_path_for_a_step(name, monkeypatch):
    options = {"learnable": True} if name == "tlu" else {}  # else one shared alpha
    unit = activations.build(name, num_channels=4, channel_dim=-1, **options)
    with pytest.raises(ValueError, match="4 per-channel parameters but the input has 5"):
        unit.over_sequence(torch.randn(3, 2, 5))
    calls = []
    monkeypatch.setattr(type(unit), "fast", lambda self, x: calls.append(x) or x)
    seq = torch.randn(3, 2, 4)
    with activations.use_backend("auto"):  # a (2, 4) step is far below auto's threshold
        unit.over_sequence(seq)(seq[0], 0)
    assert calls == []
    with activations.use_backend("eager"):
        unit.over_sequence(seq)(seq[0], 0)
    assert len(calls) == 1


def test_a_random_unit_without_over_sequence_is_refused():
    class Noisy(activations.Activation):
        draws_random = True

        def forward(self, x):
            return x + torch.randn_like(x)

    with pytest.raises(NotImplementedError, match="Noisy draws random numbers"):
        Noisy().over_sequence(torch.empty(2, 3))


def _recomputed(
    unit: activations.Activation, x: torch.Tensor, g: torch.Tensor, backend_name: str, how
) -> list[torch.Tensor]:
    """Value, slope and parameter gradients from ``how(unit, x)`` (a ``recompute``)."""
    with activations.use_backend(backend_name):
        again = how(unit, x)
        return [again.value, again.slope, *again.param_grads(g)]


def test_the_default_recompute_gives_the_derivative_and_the_parameter_gradients():
    """Activation.recompute, autograd asked for the slope and then for the parameters, against
    the formulas: tanh's 1 - tanh^2, PReLU's slope and its sum of g * min(x, 0)."""
    x = _away_from_kinks((5, 3, 4)) - 2
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tanh = activations.build("tanh")
    value, slope, *grads = _recomputed(tanh, x, g, "auto", type(tanh).recompute)
    torch.testing.assert_close(value, torch.tanh(x))
    torch.testing.assert_close(slope, 1 - torch.tanh(x) ** 2)
    assert grads == []
    prelu = _unit("prelu", 4, -1)
    value, slope, grad = _recomputed(prelu, x, g, "reference", type(prelu).recompute)
    a = prelu.weight.detach()
    torch.testing.assert_close(value, torch.where(x > 0, x, a * x))
    torch.testing.assert_close(slope, torch.where(x > 0, 1.0, a.expand_as(x)))
    torch.testing.assert_close(grad, (g * x.clamp(max=0)).sum((0, 1)))


@pytest.mark.parametrize(
    "name,params,zero_alpha",
    [
        ("mpelu", {}, False),
        ("mpelu", {}, True),
        ("tlu", {"learnable": True}, False),
        ("tlu", {}, False),
        ("tlu", {"learnable": True}, True),
    ],
    ids=["mpelu", "mpelu-alpha0", "tlu-learned", "tlu-fixed", "tlu-alpha0"],
)
@pytest.mark.parametrize(
    "backend_name", ["eager", pytest.param("compiled", marks=pytest.mark.slow)]
)
def test_fused_recompute_gives_the_bits_autograd_gives(
    name, params, zero_alpha, backend_name, monkeypatch
):
    """MPELU's and TLU's recompute (output and slope in one pass of their kernels) against the
    default, autograd asked twice over the same fast path: the same bits, so the GRU trains to
    the same numbers as before; and against the twin under autograd, to rounding. An alpha of 0
    in one channel sends MPELU's and TLU's slope to exp, as their backward (see the test below)."""
    unit = _unit(name, 4, -1, **params)
    if zero_alpha:
        with torch.no_grad():
            unit.alpha[1] = 0.0
    x = _away_from_kinks((5, 3, 4)) - 2
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    calls = []
    fast_recompute = type(unit).fast_recompute
    monkeypatch.setattr(
        type(unit), "fast_recompute", lambda self, x: calls.append(x) or fast_recompute(self, x)
    )
    fused_run = _recomputed(unit, x, g, backend_name, type(unit).recompute)
    assert len(calls) == 1  # the fused kernels ran, not the default
    plain = _recomputed(unit, x, g, backend_name, activations.Activation.recompute)
    twin = _recomputed(unit, x, g, "reference", activations.Activation.recompute)
    assert len(fused_run) == len(plain) == len(twin) == 2 + len(list(unit.parameters()))
    for f, p, t in zip(fused_run, plain, twin, strict=True):
        assert torch.equal(f, p)
        torch.testing.assert_close(f, t, atol=1e-12, rtol=1e-10)


def test_rrelu_generator_makes_draws_reproducible():
    unit = activations.build("rrelu").train()
    x = -torch.rand(3, 4, 5)
    ys = []
    for _ in range(2):
        unit.generator = torch.Generator().manual_seed(7)
        ys.append(unit(x))
    assert torch.equal(ys[0], ys[1])


@pytest.mark.parametrize("shape", [(2**16,), (3, 5, 7, 9)])  # even and odd counts
def test_random_bits_give_uniform_cells(shape):
    x = torch.empty(shape)
    hi, lo = fused.random_bits(x, torch.Generator().manual_seed(0))
    cut = 2**13  # dropout's cut for p = 0.5: keeps the cells k >= cut
    kept = fused.dropout_scale(hi, lo, cut, 2.0) > 0
    assert hi.shape == lo.shape == kept.shape == shape
    assert abs(kept.double().mean().item() - 0.5) < 0.05
    if x.numel() == 2**16:  # 14-bit resolution, not a handful of values
        cells = fused._cell(hi, lo, torch.int64).view(-1)
        assert cells.min() >= 0 and cells.max() < 2**14 and cells.unique().numel() > 2**13
        assert torch.bincount(cells // 2**10, minlength=16).min() > 2**12 * 0.8  # flat


def _lowbias32(x: int) -> int:
    """Wellons' lowbias32 (hash-prospector), in Python integers: the independent reference."""
    mask = 2**32 - 1
    x ^= x >> 16
    x = (x * 0x7FEB352D) & mask
    x ^= x >> 15
    x = (x * 0x846CA68B) & mask
    return x ^ (x >> 16)


def test_counter_cells_are_lowbias32s_top_bits():
    assert _lowbias32(0) == 0 and _lowbias32(1) != 1  # a mix, and 0 stays 0
    for offset, multiplier in ((0, 1), (12345, 0x2545F491), (-(2**31), -1), (2**31 - 1, 3)):
        key = torch.tensor([offset, multiplier], dtype=torch.int32)
        index = torch.arange(2**31 - 100, 2**31 + 100)  # wraps past int32 as the kernel's does
        cells = fused.counter_cells(key, index).tolist()
        counters = [(i * multiplier + offset) % 2**32 for i in index.tolist()]
        assert cells == [_lowbias32(z) >> 18 for z in counters]


def test_draw_key_takes_an_odd_multiplier_from_the_generator():
    keys = [fused.draw_key(torch.empty(1), torch.Generator().manual_seed(s)) for s in range(50)]
    assert all(k.dtype == torch.int32 and k[1] % 2 == 1 for k in keys)
    assert len({tuple(k.tolist()) for k in keys}) == 50
    again = fused.draw_key(torch.empty(1), torch.Generator().manual_seed(7))
    assert torch.equal(again, keys[7])


def test_rrelu_refuses_more_draws_than_its_counters(monkeypatch):
    monkeypatch.setattr(fused, "MAX_DRAWS", 100)
    x = torch.randn(101)
    with pytest.raises(ValueError, match="101 elements exceeds 100"):
        fused.rrelu_train(x, fused.draw_key(x), 3.0, 8.0)
    fused.rrelu_train(x[:100], fused.draw_key(x), 3.0, 8.0)


def test_counter_cells_are_uniform_and_independent():
    """Chi-square on 2**20 draws in 256 bins (scipy), lag-1 correlation, and two keys that
    differ by one bit draw unrelated numbers."""
    index = torch.arange(2**20)
    key = torch.tensor([7, 0x2545F491], dtype=torch.int32)
    k = fused.counter_cells(key, index)
    assert k.min() >= 0 and k.max() < 2**14
    counts = torch.bincount(k // 2**6, minlength=256).numpy()
    assert scipy.stats.chisquare(counts).pvalue > 1e-3
    u = fused.uniform_cells(key, index, torch.float64)
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.01
    other = fused.uniform_cells(key ^ torch.tensor([1, 0], dtype=torch.int32), index, torch.float64)
    assert abs(torch.corrcoef(torch.stack([u, other]))[0, 1].item()) < 0.01
    assert (u == other).double().mean() < 2 * 2**-14  # chance agreement only
    other = fused.uniform_cells(key ^ torch.tensor([0, 2], dtype=torch.int32), index, torch.float64)
    assert abs(torch.corrcoef(torch.stack([u, other]))[0, 1].item()) < 0.01
    assert (u == other).double().mean() < 2 * 2**-14  # chance agreement only


def test_channel_view_chunks_the_rows_of_channels_last_maps_for_the_sums():
    last = fused.ChannelView(torch.empty(128, 6, 4, 4).to(memory_format=torch.channels_last), 1)
    t3 = last.to3d(torch.randn(128, 6, 4, 4).to(memory_format=torch.channels_last))
    assert last.chunked(t3).shape == (fused.SUM_CHUNKS, 2048 // fused.SUM_CHUNKS, 6, 1)
    odd = fused.ChannelView(torch.empty(5, 7, 3), -1)  # 35 rows: 35 chunks of one
    assert odd.chunked(odd.to3d(torch.empty(5, 7, 3))).shape == (35, 1, 3, 1)
    gru = fused.ChannelView(torch.empty(50, 50, 8), -1)  # 2,500 rows: 250 chunks of 10
    assert gru.chunked(gru.to3d(torch.empty(50, 50, 8))).shape == (250, 10, 8, 1)
    prime = fused.ChannelView(torch.empty(257, 3), -1)  # no divisor up to 256 but 1
    assert prime.chunked(prime.to3d(torch.empty(257, 3))).shape == (1, 257, 3, 1)
    first = fused.ChannelView(torch.empty(8, 6, 4, 4), 1)  # channel-first: not chunked
    assert first.chunked(first.to3d(torch.empty(8, 6, 4, 4))).shape == (1, 8, 6, 16)
    chunks = last.chunked(t3)
    assert chunks.data_ptr() == t3.data_ptr()  # a view
    torch.testing.assert_close(chunks.sum(dim=(1, 3)).sum(0), t3.sum(dim=(0, 2)))


def test_memory_index_follows_the_memory_format():
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    index = fused.memory_index(x)
    assert index.shape == x.shape
    order = fused.memory_order(x)
    flat = fused.to_flat(x, order)
    assert order == [0, 2, 3, 1] and flat.data_ptr() == x.data_ptr()  # a view, no copy
    assert index[0, 1, 0, 0] == 1 and index[0, 0, 0, 1] == 3  # channels move fastest
    back = fused.from_flat(flat, x.shape, order)
    assert torch.equal(back, x) and back.stride() == x.stride()
    assert torch.equal(fused.to_flat(x.contiguous(), order), flat)  # another layout: copied
    sliced = torch.arange(24.0).view(4, 6)[:, ::2]  # not dense: counted as its contiguous copy
    assert fused.memory_index(sliced).view(-1).tolist() == list(range(12))


@pytest.mark.parametrize("backend_name", ["reference", "eager", "compiled"])
def test_rrelu_draws_do_not_depend_on_the_backend(backend_name):
    """The counters are hashed in integers, so every backend draws the same a exactly."""
    unit = activations.build("rrelu").train()
    x = -torch.rand(3, 8, 9, 10, dtype=torch.float64).to(memory_format=torch.channels_last) - 0.5
    key = fused.draw_key(x, torch.Generator().manual_seed(3))
    expected = x * (1 / (3 + 5 * fused.uniform_cells(key, fused.memory_index(x), x.dtype)))
    g = torch.randn(x.shape, dtype=x.dtype)  # contiguous: not the input's layout
    xr = x.clone().requires_grad_()
    with activations.use_backend(backend_name):
        if backend_name == "reference":
            y = unit.reference_train(xr, key)
        else:
            y = fused.rrelu_train(xr, key, 3.0, 8.0)
        y.backward(g)
    torch.testing.assert_close(y, expected, atol=1e-15, rtol=0)
    torch.testing.assert_close(xr.grad, g * expected / x, atol=1e-15, rtol=1e-14)


def test_large_draws_are_chunked_yet_the_same_for_any_thread_count(monkeypatch):
    """A draw of many words runs in independently seeded chunks on a thread pool; the bits
    depend on the seed and the size only, never on how many threads drew them."""
    monkeypatch.setattr(fused, "DRAW_CHUNK", 1000)
    x = torch.empty(2, 3, 50, 40)  # 12,000 elements: 6,000 words, six chunks
    threads = torch.get_num_threads()
    draws = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            draws.append(fused.random_bits(x, torch.Generator().manual_seed(5)))
    finally:
        torch.set_num_threads(threads)
    for hi, lo in draws[1:]:
        assert torch.equal(hi, draws[0][0]) and torch.equal(lo, draws[0][1])
    words = torch.cat([draws[0][0].reshape(-1), draws[0][1].reshape(-1)]).view(-1)
    chunks = words.split(2000)  # no two chunks repeat each other (distinct seeds)
    assert len({tuple(c[:64].tolist()) for c in chunks}) == len(chunks)
    u = (fused._cell(*draws[0], torch.float64) + 0.5) / 2**14
    assert abs(u.mean().item() - 0.5) < 0.02 and u.min() > 0 and u.max() < 1
    again = fused.random_bits(x, torch.Generator().manual_seed(6))
    assert not torch.equal(again[0], draws[0][0])


# ----------------------------------------------------------------------------------------------
# Backend switch and compiled kernels


def test_backend_switch_env_var_and_errors(monkeypatch):
    monkeypatch.setattr(backend, "_override", None)
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert activations.get_backend() == backend.DEFAULT_BACKEND
    monkeypatch.setenv(backend.ENV_VAR, "reference")
    assert activations.get_backend() == "reference"
    activations.set_backend("eager")  # an explicit choice wins over the variable
    assert activations.get_backend() == "eager"
    with pytest.raises(ValueError, match=r"unknown activation backend 'fast'.*compiled"):
        activations.set_backend("fast")
    activations.set_backend(None)
    monkeypatch.setattr(backend, "_compile_failed", False)
    with activations.use_backend("auto"):  # small tensors run the twin, big ones compiled
        assert backend.path_for(backend.AUTO_MIN_NUMEL - 1) == "reference"
        assert backend.path_for(backend.AUTO_MIN_NUMEL) == "compiled"
        quarter = backend.AUTO_MIN_NUMEL // 4  # a unit whose twin costs 4x moves the line
        assert backend.path_for(quarter - 1, twin_cost=4) == "reference"
        assert backend.path_for(quarter, twin_cost=4) == "compiled"
    with activations.use_backend("reference"):
        assert backend.path_for(backend.AUTO_MIN_NUMEL, twin_cost=4) == "reference"
    monkeypatch.setenv(backend.ENV_VAR, "turbo")
    with pytest.raises(ValueError, match="ACTLAB_ACTIVATION_BACKEND"):
        activations.get_backend()


def test_rrelu_kernels_compile_where_the_unit_leaves_its_twin(monkeypatch):
    """Under ``auto`` RReLU takes its fast path from a quarter of AUTO_MIN_NUMEL; its kernels
    must then compile too, not run op by op (the eager fast path: 27 against 1.9 ms
    forward+backward on a 64x32x16x16 map)."""
    compiled = []

    def spy(fn, **kwargs):
        compiled.append(fn.__name__)
        return fn  # traced as plain code: what matters is that the kernel asked for it

    monkeypatch.setattr(torch, "compile", spy)
    monkeypatch.setattr(backend, "_compile_failed", False)
    monkeypatch.setattr(fused._rrelu_forward, "_compiled", None)
    x = torch.randn(backend.AUTO_MIN_NUMEL // 4, requires_grad=True)
    with activations.use_backend("auto"):
        activations.build("rrelu").train()(x).sum().backward()
    assert compiled == ["_rrelu_forward"]


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no compiler here")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(backend, "_compile_failed", False)
    k = backend.Kernel(lambda x: x * 2)
    x = torch.ones(3)
    with activations.use_backend("compiled"):
        with pytest.warns(RuntimeWarning, match="no compiler here"):
            assert torch.equal(k(x), x * 2)
        assert backend.path_for(10**9) == "eager"
        assert torch.equal(k(x), x * 2)  # no second warning (pytest errors on unexpected ones)


def test_a_genuine_error_inside_a_kernel_is_not_taken_for_a_compile_failure(monkeypatch):
    monkeypatch.setattr(backend, "_compile_failed", False)
    k = backend.Kernel(lambda x, y: x + y)
    with activations.use_backend("eager"), pytest.raises(RuntimeError):
        k(torch.ones(3), torch.ones(4))
    assert not backend._compile_failed


@pytest.mark.parametrize("name,params", [*LEARNABLE[:3], ("elu", {}), ("rrelu", {})])
def test_compiled_fast_path_equals_its_twin(name, params):
    shape = (2, 3, 4, 5)
    unit = _unit(name, 3, 1, **params).float().train()
    x = _away_from_kinks(shape).float() - 2
    g = torch.randn(shape)
    ref = _run(unit, x, g, "reference")
    compiled = _run(unit, x, g, "compiled")
    assert not backend._compile_failed, "torch.compile failed; the test ran eager"
    for r, c in zip(ref, compiled, strict=True):
        torch.testing.assert_close(c, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend_name", ["eager", "compiled"])
@pytest.mark.parametrize(
    "name,params", [("mpelu", {}), ("tlu", {"learnable": True})], ids=["mpelu", "tlu"]
)
def test_a_zero_alpha_sends_the_backward_to_exp(name, params, backend_name):
    """MPELU's and TLU's CPU backward read their exp terms back from the output (MPELU's
    y = alpha (exp(beta m) - 1), TLU's y = alpha tanh(m)); an alpha of 0 zeroes that output, so
    the backward must compute exp instead, or alpha's gradient would be 0 (NaN for TLU) and the
    unit would stay ReLU for good."""
    unit = activations.build(name, num_channels=3, alpha=0.0, **params).double().train()
    with torch.no_grad():
        unit.alpha[1] = 0.5  # one channel's alpha away from 0: the whole layer takes exp
    x = _away_from_kinks((2, 3, 4, 5)) - 2
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = _run(unit, x, g, "reference")
    fast = _run(unit, x, g, backend_name)
    for r, f in zip(ref, fast, strict=True):
        torch.testing.assert_close(f, r, atol=1e-12, rtol=1e-10)
    assert fast[2][0].abs() > 0.1  # alpha's gradient in a channel where alpha is 0


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS[1:], ids=lambda v: str(v))
@pytest.mark.parametrize("name,params", FAST_CASES, ids=lambda v: str(v))
def test_compiled_fast_path_equals_its_twin_in_every_layout(name, params, layout):
    channel_dim, shape, channels_last = layout
    unit = _unit(name, shape[channel_dim], channel_dim, **params).float().train()
    x = _away_from_kinks(shape).float() - 2
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    g = torch.randn(shape)
    ref = _run(unit, x, g, "reference")
    compiled = _run(unit, x, g, "compiled")
    for r, c in zip(ref, compiled, strict=True):
        torch.testing.assert_close(c, r, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Scripts


def test_bench_smoke(capsys, monkeypatch):
    bench = _load_script("bench_activations")
    allocator = []
    monkeypatch.setattr(bench, "reuse_freed_memory", allocator.append)
    bench.main(["--size", "2,4,3,3", "--repeat", "1", "--backend", "eager"])
    assert allocator == [True]  # timed as the trainer runs by default, not page-faulting
    out = capsys.readouterr().out
    assert "reuse_freed_memory True, flush_denormal False" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert set(activations.names()) <= set(lines)
    fast_table = out.split("fast path", 1)[1]
    for name in FAST:
        assert name in fast_table


def test_stats_table(capsys):
    from activations.__main__ import main

    main(["--samples", "65536"])
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == set(activations.names())
    mean, zeros, neg, pos, _ = rows["relu"]
    assert abs(float(mean) - 1 / math.sqrt(2 * math.pi)) < 0.01 and abs(float(zeros) - 0.5) < 0.01
    assert (float(neg), float(pos)) == (0.0, 1.0)
    assert int(rows["mpelu"][4]) == 128 and int(rows["prelu"][4]) == 64
    assert float(rows["sigmoid"][2]) == pytest.approx(_sigmoid(5) * (1 - _sigmoid(5)), abs=1e-4)


def test_plot_script_writes_png_and_pdf(tmp_path):
    plot = _load_script("plot_activations")
    stem = tmp_path / "acts"
    plot.main(["--units", "relu", "rrelu", "lrelu:slope=0.1818", "--out", str(stem)])
    assert (tmp_path / "acts.png").stat().st_size > 0 and (tmp_path / "acts.pdf").exists()
    with pytest.raises(SystemExit):
        plot.main(["--units", "maxout", "--out", str(stem)])

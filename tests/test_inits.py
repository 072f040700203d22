"""Inits: weight statistics against their formulas, LSUV's unit variance, config and error paths."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import activations
from activations import Activation
from experiments.inits import INITS, MODES, initialize
from experiments.models import build_model
from experiments.models.common import Dropout

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "init"
#: Conv 64 -> 128, 3x3: fan_in 576, fan_out 1152, 73,728 weights (std estimate error ~0.3%).
FAN_IN, FAN_OUT = 64 * 9, 128 * 9
FANS = {"fan_in": FAN_IN, "fan_out": FAN_OUT, "average": (FAN_IN + FAN_OUT) / 2}


class Leaky(Activation):
    """Test unit with chosen He and Taylor slopes, independent of the library's units."""

    def __init__(self, num_channels=None, channel_dim=1, slope=0.0, taylor=None, weight=None):
        super().__init__(num_channels, channel_dim)
        self.slope, self.taylor = slope, slope if taylor is None else taylor
        if weight is not None:  # a learnable parameter, as PReLU / MPELU have
            self.weight = nn.Parameter(torch.full((num_channels,), weight))

    @property
    def he_slope(self) -> float:
        return self.slope

    @property
    def taylor_slope(self) -> float:
        return self.taylor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.leaky_relu(x, self.slope)


class OneLayer(nn.Module):
    def __init__(self, unit: Activation | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64, 128, 3)
        self.unit = unit
        nn.init.ones_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if self.unit is None else self.unit(self.conv(x))

    def weight_layers(self) -> list[tuple[nn.Module, Activation | None]]:
        return [(self.conv, self.unit)]


def tiny(name: str, act=None, **options) -> nn.Module:
    act = act or functools.partial(activations.build, "relu")
    small = {
        "nin": {"widths": [12] * 8},
        "plainnet": {"depth": 8, "widths": [8, 12, 16], "stage_convs": [1, 2], "fc_widths": [12]},
    }
    return build_model(name, act, num_outputs=10, in_channels=3, **small[name], **options)


def layer_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every weight layer's output on ``x`` in eval mode, in forward order."""
    outputs: list[torch.Tensor] = []
    for layer, _ in model.weight_layers():
        layer.register_forward_hook(lambda m, i, out: outputs.append(out.detach()))
    model.eval()
    with torch.no_grad():
        model(x)
    return outputs


def assert_std(weight: torch.Tensor, expected: float, rel: float = 0.02) -> None:
    assert weight.std().item() == pytest.approx(expected, rel=rel)
    assert abs(weight.mean().item()) < 0.05 * expected


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("slope", [0.0, 0.25, None])
def test_he_std_is_gain_over_root_n(mode, slope):
    model = OneLayer(None if slope is None else Leaky(slope=slope))
    initialize(model, f"he_{mode}")
    gain = 1.0 if slope is None else math.sqrt(2 / (1 + slope**2))  # no unit: linear, gain 1
    assert_std(model.conv.weight, gain / math.sqrt(FANS[mode]))
    assert not model.conv.bias.any()


@pytest.mark.parametrize("mode", MODES)
def test_taylor_with_alpha_beta_one_gives_root_one_over_n(mode):
    model = OneLayer(Leaky(slope=0.0, taylor=1.0))  # He would use slope 0; Taylor must use 1
    initialize(model, "taylor", mode=mode)
    assert_std(model.conv.weight, math.sqrt(1 / FANS[mode]))
    assert not model.conv.bias.any()


def test_taylor_counts_fan_in_by_default():
    model = OneLayer(Leaky(taylor=0.5))
    initialize(model, "taylor")
    assert_std(model.conv.weight, math.sqrt(2 / (FAN_IN * (1 + 0.5**2))))


@pytest.mark.parametrize(
    ("name", "params", "init", "slope"),
    [
        ("mpelu", {"alpha": 1.0, "beta": 1.0}, "taylor", 1.0),
        ("mpelu", {"alpha": 0.25, "beta": 2.0}, "taylor", 0.5),  # alpha * beta, not alpha
        ("prelu", {"init": 0.5}, "he_fan_in", 0.5),
        ("rrelu", {"lower": 3.0, "upper": 8.0}, "he_fan_in", 2 / 11),  # its evaluation slope
        ("identity", {}, "he_fan_in", 1.0),  # a = 1: gain 1, the linear layer's
    ],
)
def test_inits_take_the_slope_of_the_library_unit(name, params, init, slope):
    model = OneLayer(activations.build(name, 128, **params))
    initialize(model, init)
    assert_std(model.conv.weight, math.sqrt(2 / (FAN_IN * (1 + slope**2))))


def test_xavier_is_glorot_uniform():
    model = OneLayer(Leaky(slope=0.25))  # the unit does not matter to Xavier
    initialize(model, "xavier")
    bound = math.sqrt(6 / (FAN_IN + FAN_OUT))
    assert model.conv.weight.abs().max().item() <= bound
    assert_std(model.conv.weight, bound / math.sqrt(3))
    assert not model.conv.bias.any()


def test_gaussian_defaults_to_the_nin_std():
    model = OneLayer(Leaky())
    initialize(model, "gaussian")
    assert_std(model.conv.weight, 0.05)
    assert not model.conv.bias.any()
    initialize(model, "gaussian", std=0.01)
    assert_std(model.conv.weight, 0.01)


def test_uniform_covers_weights_and_biases_but_not_unit_parameters():
    model = tiny("nin", act=functools.partial(Leaky, weight=0.25))
    initialize(model, "uniform", a=0.1)
    units = activations.activation_parameters(model)
    assert units and all((p == 0.25).all() for p in units)
    unit_ids = {id(p) for p in units}
    others = [p for p in model.parameters() if id(p) not in unit_ids]
    values = torch.cat([p.detach().flatten() for p in others])
    assert values.abs().max().item() <= 0.1
    assert values.abs().max().item() > 0.099  # spread over the whole interval
    assert values.mean().abs().item() < 0.005  # U(-0.1, 0.1) over ~90k values: sd of mean 2e-4
    biases = torch.cat([layer.bias.detach() for layer, _ in model.weight_layers()])
    assert biases.abs().min().item() > 0  # biases are drawn too, not zeroed


def test_default_leaves_pytorch_init_alone():
    model = tiny("plainnet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    initialize(model, "default")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class FreshBatches:
    """A new random batch on every call (as the authors' LSUV script pulls one per forward),
    recording each call's index, the model's mode and its dropout modules' modes."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        self.model, self.shape, self.calls = model, shape, []
        self.gen = torch.Generator().manual_seed(0)

    def __call__(self, i: int) -> torch.Tensor:
        dropout = [m.training for m in self.model.modules() if isinstance(m, Dropout)]
        self.calls.append((i, self.model.training, dropout))
        return torch.randn(self.shape, generator=self.gen)


@pytest.mark.parametrize("name", ["nin", "plainnet"])
def test_lsuv_as_the_authors_script_in_train_mode_on_fresh_batches(name, monkeypatch):
    """Each layer stops within 0.02 of unit variance on the batch it was last measured on, or
    after 20 rescales; dropout is active and every measurement draws a new batch."""
    from experiments import inits

    torch.manual_seed(0)
    model = tiny(name)
    model.eval()
    measured: list[tuple[nn.Module, float]] = []
    original = inits._output_variance

    def spy(model_, layer, batch):
        variance = original(model_, layer, batch)
        measured.append((layer, variance))
        return variance

    monkeypatch.setattr(inits, "_output_variance", spy)
    batches = FreshBatches(model, (64, 3, 32, 32))
    initialize(model, "lsuv", batches=batches)
    assert not model.training  # the mode is restored
    assert [i for i, _, _ in batches.calls] == list(range(len(measured)))  # a fresh batch each
    assert all(training and all(d) and d for _, training, d in batches.calls)  # dropout active
    layers = [layer for layer, _ in model.weight_layers()]
    for layer in layers:
        seen = [v for m, v in measured if m is layer]
        assert abs(seen[-1] - 1) <= 0.02 or len(seen) == 21, (layer, seen)
    # and independently: on a new large batch, in train mode, every layer is near unit variance
    outputs = []
    for layer in layers:
        layer.register_forward_hook(lambda m, i, out: outputs.append(out.detach()))
    model.train()
    with torch.no_grad():
        model(torch.randn(256, 3, 32, 32))
    assert all(abs(out.var().item() - 1) < 0.15 for out in outputs), [o.var() for o in outputs]


def test_lsuv_starts_from_orthonormal_weights():
    model = tiny("nin")
    initialize(model, "lsuv", batches=lambda i: torch.randn(8, 3, 32, 32))
    weight = model.weight_layers()[1][0].weight.detach().flatten(1)  # 12 rows of 12: square
    gram = weight @ weight.T
    scale = gram.diagonal().mean()
    assert torch.allclose(gram / scale, torch.eye(len(gram)), atol=1e-5)


class Recurrent(nn.Module):
    """Applies ``step`` at each of 3 steps, and ``fused`` only through its weight (no hook fires),
    as a GRU does with its input and recurrent projections."""

    def __init__(self) -> None:
        super().__init__()
        self.step, self.fused = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(x[0])
        for t in range(len(x)):
            h = torch.tanh(self.step(x[t]) + nn.functional.linear(h, self.fused.weight))
        return h

    def weight_layers(self) -> list[tuple[nn.Module, Activation | None]]:
        return [(self.step, None), (self.fused, None)]


def test_lsuv_pools_repeated_calls_and_leaves_unhooked_layers_orthonormal():
    model = Recurrent()
    probe = 3 * torch.randn(3, 64, 16)
    initialize(model, "lsuv", batches=lambda i: probe, tol=0.01)
    step_outputs = torch.stack([model.step(x) for x in probe]).detach()
    assert step_outputs.var().item() == pytest.approx(1, abs=0.01)
    fused = model.fused.weight.detach()
    assert torch.allclose(fused @ fused.T, torch.eye(16), atol=1e-5)


def test_lsuv_needs_batches():
    with pytest.raises(ValueError, match="lsuv' needs input batches"):
        initialize(tiny("nin"), "lsuv")


def _plain30_stds(unit: str, init: str) -> list[float]:
    """Output std of each of PlainNet-30's layers on one fixed random batch under ``init``."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    model = build_model(
        "plainnet", functools.partial(activations.build, unit), num_outputs=10, in_channels=3
    )
    initialize(model, init)
    return [out.std().item() for out in layer_outputs(model, x)]


def test_deep_plain_relu_net_under_he_keeps_its_signal_where_xavier_loses_it():
    stds = _plain30_stds("relu", "he_fan_in")
    assert len(stds) == 30 and all(math.isfinite(s) for s in stds)
    assert all(0.1 < s < 10 for s in stds), stds  # He: every layer's output stays O(1)
    convs = _plain30_stds("relu", "xavier")[:27]  # gain 1 for ReLU halves the power every layer
    assert convs[-1] < 1e-2 * convs[0]


def test_deep_identity_net_under_he_keeps_its_signal():
    """A linear net under He (gain 1 from a = 1) neither blows up nor fades over 30 layers; with
    ReLU's gain sqrt(2) the variance would double at every layer."""
    stds = _plain30_stds("identity", "he_fan_in")
    assert all(0.1 < s < 10 for s in stds), stds


def test_unknown_names_and_options_list_the_choices():
    with pytest.raises(ValueError, match="unknown init 'msra'; choose from: default, gaussian"):
        initialize(OneLayer(None), "msra")
    with pytest.raises(ValueError, match="init 'he_fan_in' has no option 'std'; valid: \\(none\\)"):
        initialize(OneLayer(None), "he_fan_in", std=0.1)
    with pytest.raises(ValueError, match="mode='fan' is not allowed; choose from: fan_in"):
        initialize(OneLayer(None), "taylor", mode="fan")


def test_every_init_has_a_config_with_the_code_defaults():
    files = sorted(CONFIGS.glob("*.yaml"))
    assert sorted(f.stem for f in files) == INITS.names()
    for path in files:
        config = yaml.safe_load(path.read_text())
        assert config.pop("name") == path.stem
        assert config == INITS.defaults(path.stem), path.name

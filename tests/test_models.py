"""NIN and PlainNet: parameter counts, shapes, channel-changing units, layer order, options."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import nn

import activations
import experiments.models.nin
import experiments.models.plainnet  # noqa: F401  (register both for MODELS.defaults)
from activations import Activation
from experiments.models import MODELS, build_model
from experiments.models.common import Dropout

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
TINY_NIN = {"widths": [12] * 8}
#: Widths divisible by 2, 3 and 4 so any default Maxout(k) fits without equal_params.
TINY_PLAIN = {"depth": 8, "widths": [12, 24, 36], "stage_convs": [1, 2], "fc_widths": [12]}
#: TINY_PLAIN's (c_in, c_out, k) convs: stem, stage 2 (2), stage 3 (8 - 3 convs - 2 FCs = 3).
TINY_PLAIN_CONVS = [(3, 12, 3), (12, 24, 2), (24, 24, 2), (24, 36, 2), (36, 36, 2), (36, 36, 2)]


class Doubling(Activation):
    """CReLU-like test unit, independent of the library: [relu(x), relu(-x)] on channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)

    def out_channels(self, in_channels: int) -> int:
        return 2 * in_channels


class PairMax(Activation):
    """Maxout(2)-like test unit: max over consecutive channel pairs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (-1, 2)).amax(2)

    def out_channels(self, in_channels: int) -> int:
        if in_channels % 2:
            raise ValueError(f"{in_channels} channels cannot be paired")
        return in_channels // 2


def relu() -> functools.partial:
    return functools.partial(activations.build, "relu")


def nin(act=None, num_outputs: int = 10, **options) -> nn.Module:
    return build_model("nin", act or relu(), num_outputs=num_outputs, in_channels=3, **options)


def plainnet(act=None, num_outputs: int = 10, **options) -> nn.Module:
    return build_model("plainnet", act or relu(), num_outputs=num_outputs, in_channels=3, **options)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_nin_relu_has_the_reference_parameter_count():
    assert count(nin()) == 966_986


def test_nin_layers_match_the_prototxt():
    pairs = nin().weight_layers()
    assert [layer.out_channels for layer, _ in pairs] == [192, 160, 96, 192, 192, 192, 192, 192, 10]
    assert [layer.kernel_size[0] for layer, _ in pairs] == [5, 1, 1, 5, 1, 1, 3, 1, 1]
    assert all(isinstance(unit, Activation) for _, unit in pairs)
    assert nin(final_activation=False).weight_layers()[-1][1] is None


def test_plainnet_default_parameter_count_matches_its_layer_list():
    # stem 3x3, 4 convs 2x2 at 128, 22 at 256, FC 1024, FC 1024, classifier: 30 weight layers
    convs = [(3, 64, 3), (64, 128, 2), *[(128, 128, 2)] * 3, (128, 256, 2), *[(256, 256, 2)] * 21]
    fcs = [(256, 1024), (1024, 1024), (1024, 10)]
    assert len(convs) + len(fcs) == 30
    expected = sum(i * o * k * k + o for i, o, k in convs) + sum(i * o + o for i, o in fcs)
    model = plainnet()
    assert count(model) == expected
    assert len(model.weight_layers()) == 30
    assert model.weight_layers()[-1][1] is None


def test_plainnet_bn_swaps_conv_biases_for_batchnorm_affine():
    fcs = [(36, 12), (12, 10)]
    expected = sum(i * o * k * k + 2 * o for i, o, k in TINY_PLAIN_CONVS)
    expected += sum(i * o + o for i, o in fcs)
    model = plainnet(**TINY_PLAIN, bn=True)
    assert count(model) == expected
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(TINY_PLAIN_CONVS)


@pytest.mark.parametrize("depth", [6, 9, 31])
def test_plainnet_depth_counts_weight_layers(depth):
    assert len(plainnet(**{**TINY_PLAIN, "depth": depth}).weight_layers()) == depth


def test_plainnet_can_be_one_stage_and_a_classifier():
    model = plainnet(depth=3, widths=[8], strides=[1], stage_convs=[], fc_widths=[])
    assert [type(layer) for layer, _ in model.weight_layers()] == [nn.Conv2d] * 2 + [nn.Linear]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def spatial_sizes(model: nn.Module, kinds: tuple[type, ...]) -> list[int]:
    sizes: list[int] = []
    for module in model.modules():
        if isinstance(module, kinds):
            module.register_forward_hook(lambda m, i, out: sizes.append(out.shape[-1]))
    model(torch.randn(2, 3, 32, 32))
    return sizes


def test_nin_pools_round_up_like_caffe():
    pools = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    assert spatial_sizes(nin(**TINY_NIN), pools) == [16, 8, 1]


def test_plainnet_2x2_convs_shrink_and_regrow_maps():
    sizes = spatial_sizes(plainnet(widths=[4, 8, 8], fc_widths=[8, 8]), (nn.Conv2d,))
    assert sizes == [32] + [15, 16] * 2 + [7, 8] * 11


def forward_trace(model: nn.Module) -> list[nn.Module]:
    calls: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, Activation) or not list(module.children()):
            module.register_forward_hook(lambda m, i, out: calls.append(m))
    model(torch.randn(2, 3, 32, 32))
    return calls


@pytest.mark.parametrize(
    ("build", "options"),
    [
        (nin, TINY_NIN),
        (nin, {**TINY_NIN, "final_activation": False}),
        (plainnet, TINY_PLAIN),
        (plainnet, {**TINY_PLAIN, "bn": True}),
    ],
)
def test_weight_layers_follow_forward_order_with_their_units(build, options):
    model = build(**options)
    calls = forward_trace(model)
    positions = [i for i, m in enumerate(calls) if isinstance(m, (nn.Conv2d, nn.Linear))]
    pairs = model.weight_layers()
    assert [calls[i] for i in positions] == [layer for layer, _ in pairs]
    for (_, unit), start, end in zip(pairs, positions, [*positions[1:], len(calls)], strict=True):
        following = [m for m in calls[start + 1 : end] if isinstance(m, Activation)]
        assert (following[:1] or [None])[0] is unit


def layer_list(model: nn.Module) -> list[str]:
    """The model as a paper writes its layer list: every layer in the order the forward pass
    runs it, convs with kernel and padding, pools with kernel/stride, dropout with its p."""

    def name(m: nn.Module) -> str:
        if isinstance(m, Activation):
            return "unit"
        if isinstance(m, nn.Conv2d):
            return f"conv{m.kernel_size[0]}p{m.padding[0]}"
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            kind = "max" if isinstance(m, nn.MaxPool2d) else "avg"
            return f"{kind}pool{m.kernel_size}/{m.stride}{'c' if m.ceil_mode else ''}"
        if isinstance(m, Dropout):
            return f"dropout{m.p}"
        short = {nn.Linear: "fc", nn.AdaptiveAvgPool2d: "gap", nn.Flatten: "flatten"}
        return short.get(type(m), type(m).__name__)

    return [name(m) for m in forward_trace(model)]


def test_nin_layer_list_is_the_caffe_prototxts():
    """conv1 cccp1 cccp2 | max pool 3/2, dropout | conv2 cccp3 cccp4 | avg pool 3/2, dropout |
    conv3 cccp5 cccp6 | global average pool (Lin et al. 2014; the MPELU authors' prototxts)."""
    block = ["conv{}p{}", "unit", "conv1p0", "unit", "conv1p0", "unit"]

    def convs(kernel: int) -> list[str]:
        return [block[0].format(kernel, kernel // 2), *block[1:]]

    expected = [
        *convs(5), "maxpool3/2c", "dropout0.5",
        *convs(5), "avgpool3/2c", "dropout0.5",
        *convs(3), "gap", "flatten",
    ]  # fmt: skip
    assert layer_list(nin(**TINY_NIN)) == expected
    assert layer_list(nin(**TINY_NIN, final_activation=False)) == expected[:-3] + expected[-2:]
    assert layer_list(nin(**TINY_NIN, dropout=0.2)).count("dropout0.2") == 2


def test_plainnet_layer_list():
    """Stem, stages entered by max pooling, 2x2 convs alternating pad 0 and 1, global average
    pool, then every hidden FC followed by its unit and dropout, and a linear classifier."""
    expected = [
        "conv3p1", "unit",
        "maxpool2/2", "conv2p0", "unit", "conv2p1", "unit",
        "maxpool2/2", "conv2p0", "unit", "conv2p1", "unit", "conv2p0", "unit",
        "gap", "flatten", "fc", "unit", "dropout0.5", "fc",
    ]  # fmt: skip
    assert layer_list(plainnet(**TINY_PLAIN)) == expected
    two_fcs = layer_list(plainnet(**{**TINY_PLAIN, "depth": 9, "fc_widths": [12, 12]}))
    assert two_fcs[-7:] == ["fc", "unit", "dropout0.5", "fc", "unit", "dropout0.5", "fc"]


@pytest.mark.parametrize(("build", "options"), [(nin, TINY_NIN), (plainnet, TINY_PLAIN)])
def test_dropout_acts_in_training_only(build, options):
    """Against a twin with the same weights and no dropout: training-mode outputs differ from
    it (and from call to call), evaluation-mode outputs equal it."""
    torch.manual_seed(0)
    model = build(**options, dropout=0.5)
    twin = build(**options, dropout=0.0)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    x = torch.randn(4, 3, 32, 32)
    reference = twin(x)
    model.train()
    first, second = model(x), model(x)
    assert not torch.allclose(first, reference) and not torch.allclose(first, second)
    model.eval()
    assert torch.equal(model(x), reference)


@pytest.mark.parametrize("p", [0.5, 0.2])
@pytest.mark.parametrize("backend_name", ["reference", "compiled"])
def test_dropout_keeps_one_minus_p_scaled_and_reproducibly(p, backend_name):
    """Inverted dropout from the cheap 14-bit draws: the kept share is 1 - p, kept values and
    their gradients are scaled by 1 / (1 - p), the rest are zero; a seed fixes the mask, and the
    compiled mask kernel draws the same mask as the plain one."""
    x = torch.randn(8, 16, 20, 20).to(memory_format=torch.channels_last).requires_grad_()
    drop = Dropout(p).train()
    with activations.use_backend(backend_name):
        torch.manual_seed(3)
        y = drop(x)
        torch.manual_seed(3)
        again = drop(x)
    torch.manual_seed(3)
    with activations.use_backend("reference"):
        plain = drop(x)
    assert torch.equal(y, again) and torch.equal(y, plain)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01  # 51,200 draws: sd 0.002
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(drop.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)


def registered_and_test_units():
    """Every registered unit by name, plus the two channel-changing test units."""
    units = [
        pytest.param(functools.partial(activations.build, n), id=n) for n in activations.names()
    ]
    units += [pytest.param(Doubling, id="test-doubling"), pytest.param(PairMax, id="test-pairmax")]
    return units


@pytest.mark.parametrize("act", registered_and_test_units())
@pytest.mark.parametrize("equal_params", [False, True])
@pytest.mark.parametrize(
    ("build", "options", "unit_widths"),
    [(nin, TINY_NIN, [12] * 8), (plainnet, TINY_PLAIN, [12, 24, 24, 36, 36, 36, 12])],
    ids=["nin", "plainnet"],
)
def test_forward_and_backward_with_every_unit(act, equal_params, build, options, unit_widths):
    model = build(act, **options, equal_params=equal_params)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.square().mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    # the hidden layers (NIN's class layer aside) have the nominal width, or their units do
    hidden = [pair for pair in model.weight_layers() if pair[1] is not None][: len(unit_widths)]
    filters = [getattr(layer, "out_channels", None) or layer.out_features for layer, _ in hidden]
    produced = [unit.out_channels(f) for (_, unit), f in zip(hidden, filters, strict=True)]
    assert (produced if equal_params else filters) == unit_widths


def test_equal_params_follows_the_crelu_and_maxout_recipes():
    halved = nin(Doubling, equal_params=True).weight_layers()
    assert [layer.out_channels for layer, _ in halved] == [96, 80, 48, 96, 96, 96, 96, 96, 5]
    paired = nin(PairMax, equal_params=True).weight_layers()
    assert [layer.out_channels for layer, _ in paired] == [384, 320, 192] + [384] * 5 + [20]
    doubled = nin(Doubling).weight_layers()  # without the option the next layer widens instead
    expected_inputs = [3, 384, 320, 192] + [384] * 5
    assert [layer.in_channels for layer, _ in doubled] == expected_inputs


def test_options_may_come_as_hydra_containers():
    config = OmegaConf.create({"widths": [12] * 8, "dropout": 0.25})
    assert nin(**config).weight_layers()[0][0].out_channels == 12


def test_a_unit_that_cannot_reach_a_width_fails_clearly():
    with pytest.raises(ValueError, match="cannot output 7 channels"):
        nin(Doubling, widths=[8, 8, 7, 8, 8, 8, 8, 8], equal_params=True)


@pytest.mark.parametrize("build", [nin, plainnet])
@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, True, "0.5"])
def test_dropout_must_be_a_probability_below_one(build, p):
    with pytest.raises(ValueError, match=r"dropout=.*0 <= p < 1"):
        build(dropout=p)


@pytest.mark.parametrize("depth", [0, -3, 5, 2.5])
def test_plainnet_depth_below_its_minimum_fails(depth):
    with pytest.raises(ValueError, match=r"depth=.*>= 6"):
        plainnet(**{**TINY_PLAIN, "depth": depth})


@pytest.mark.parametrize(
    ("build", "options", "match"),
    [
        (nin, {"widths": [192] * 7}, "widths=.*needs exactly 8"),
        (nin, {"widths": [192] * 7 + [0]}, "widths=.*positive integers"),
        (plainnet, {"strides": [1, 2]}, "strides=.*needs exactly 3"),
        (plainnet, {"widths": []}, "widths=\\[\\] is not allowed"),
        (plainnet, {"kernel_size": 0}, "kernel_size=0"),
        (nin, {"width_mult": 2}, "has no option 'width_mult'; valid: widths"),
    ],
)
def test_bad_options_fail_with_one_clear_line(build, options, match):
    with pytest.raises(ValueError, match=match):
        build(**options)


#: where a model YAML departs from the code on purpose: NIN's code is the prototxts' (a unit on the
#: class maps), while the default recipe leaves it out because that ReLU dies (README "Default
#: recipe"); recipe/nin_caffe sets it back.
RECIPE_DEFAULTS = {("nin", "final_activation"): False}


@pytest.mark.parametrize("name", ["nin", "plainnet"])
def test_yaml_lists_every_option_with_the_code_default(name):
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert config.pop("name") == name
    defaults = MODELS.defaults(name)
    assert config.keys() == defaults.keys()
    for key, value in config.items():
        default = defaults[key]
        if (name, key) in RECIPE_DEFAULTS:  # the config's default recipe, not the paper's net
            assert value == RECIPE_DEFAULTS[name, key] != default, key
            continue
        assert value == (list(default) if isinstance(default, tuple) else default), key

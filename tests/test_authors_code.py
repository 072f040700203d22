"""Ports of the authors' code, each checked against the fact it reproduces (file:line in the
authors' repositories, as read in the project's fidelity audit): Caffe's per-blob lr / decay
multipliers, the plain-net prototxts' FC fillers, Caffe's Xavier filler and crop layout,
cxxnet's clipped PReLU, and char-rnn's per-step divergence stop and carried hidden state."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_PLAINNET
from test_corpus import Spy, sample_text, text_task
from torch import nn

import activations
import experiments.components
from experiments.config import ConfigError, validate
from experiments.data import build_task
from experiments.inits import initialize
from experiments.models import build_model
from experiments.optim import describe_groups, param_groups
from experiments.rundir import RunDir, read_csv
from experiments.train import run

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(name: str, unit: str = "prelu", **options) -> nn.Module:
    small = {
        "nin": {"widths": [6] * 8},
        "plainnet": {"depth": 6, "widths": [4, 8, 8], "stage_convs": [1, 1], "fc_widths": [8, 8]},
    }
    act = functools.partial(activations.build, unit)
    return build_model(name, act, num_outputs=10, in_channels=3, **{**small[name], **options})


def group_of(groups: list[dict], param: nn.Parameter) -> dict:
    (found,) = [g for g in groups if any(p is param for p in g["params"])]
    return found


# -- lr / decay multipliers ---------------------------------------------------------------------


def test_rules_apply_in_order_per_key_after_the_shortcuts():
    model = tiny("nin")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    units = [m for m in model.modules() if isinstance(m, activations.Activation)]
    groups = param_groups(
        model,
        lr=0.1,
        weight_decay=1e-3,
        act_lr_mult=3.0,  # shortcut: {role: activation, lr_mult: 3, decay_mult: 1}
        bias_weight_decay=False,  # shortcut: {role: bias, decay_mult: 0}
        multipliers=[
            {"role": "bias", "lr_mult": 2},
            {"layer": "classifier", "lr_mult": 0.1},  # every role of the last layer ...
            {"role": "activation", "layer": -1, "decay_mult": 5},  # ... its unit's decay x5
            {"role": "weight", "layer": "layers.0", "decay_mult": 0},  # a module-name pattern
            {"role": "weight", "layer": "1", "lr_mult": 4},  # an index, as YAML gives a string
        ],
    )
    expect = {  # (lr, weight decay) per parameter, worked out from the rules by hand
        convs[0].weight: (0.1, 0.0),
        convs[1].weight: (0.4, 1e-3),
        convs[4].weight: (0.1, 1e-3),
        convs[4].bias: (0.2, 0.0),
        convs[-1].weight: (0.01, 1e-3),
        convs[-1].bias: (0.01, 0.0),
        units[0].weight: (0.3, 1e-3),
        units[-1].weight: (0.01, 5e-3),
    }
    for param, (lr, wd) in expect.items():
        group = group_of(groups, param)
        assert (group["lr"], group["base_lr"]) == pytest.approx((lr, lr))
        assert group["weight_decay"] == pytest.approx(wd)
    every = [p for g in groups for p in g["params"]]
    assert len(every) == len({id(p) for p in every}) == len(list(model.parameters()))
    assert groups[0]["lr_mult"] == 1.0  # the first group carries the base rate (logged lr)


def test_layer_selectors_name_the_same_layer():
    model = tiny("plainnet")
    last = model.weight_layers()[-1][0]
    name = next(n for n, m in model.named_modules() if m is last)
    for spec in ("classifier", -1, str(len(model.weight_layers()) - 1), name):
        groups = param_groups(
            model, lr=1.0, weight_decay=0.0, multipliers=[{"layer": spec, "lr_mult": 0.5}]
        )
        assert group_of(groups, last.weight)["lr"] == group_of(groups, last.bias)["lr"] == 0.5
        others = [p for layer, _ in model.weight_layers()[:-1] for p in layer.parameters()]
        assert all(group_of(groups, p)["lr"] == 1.0 for p in others)


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        ({"layer": 6}, r"multipliers\[0\].layer=6 is out of range; the model has 6 weight"),
        ({"layer": "cccp6"}, r"layer='cccp6' matches no weight layer; use classifier"),
        ({"role": "slope"}, r"multipliers\[0\].role='slope'; choose from: weight, bias"),
        ({"lr": 2}, r"multipliers\[0\] has unknown key 'lr'"),
    ],
)
def test_bad_rules_fail_in_one_line(rule, match):
    with pytest.raises(ValueError, match=match) as err:
        param_groups(tiny("plainnet"), lr=1.0, weight_decay=0.0, multipliers=[rule])
    assert "\n" not in str(err.value)


def test_config_rejects_a_bad_rule_before_any_data(tiny_config):
    cfg = tiny_config("optimizer.multipliers=[{role: biases, lr_mult: 2}]")
    with pytest.raises(ConfigError, match=r"multipliers\[0\].role='biases' is not allowed"):
        validate(cfg)
    cfg = tiny_config("optimizer.multipliers=[{role: bias, lr_mult: -1}]")
    with pytest.raises(ConfigError, match=r"multipliers\[0\].lr_mult=-1.0 is out of range"):
        validate(cfg)


def test_summary_records_the_effective_groups(tiny_config, tmp_path):
    cfg = tiny_config(
        "activation=prelu",
        "optimizer.lr=0.05",
        "optimizer.weight_decay=1e-4",
        "optimizer.multipliers=[{role: bias, lr_mult: 2, decay_mult: 0},"
        "{role: weight, layer: classifier, lr_mult: 0.1}]",
    )
    assert run(cfg, tmp_path) == "completed"
    recorded = RunDir(tmp_path).read_summary()["param_groups"]
    by_name = {g["name"]: g for g in recorded}
    model = tiny("nin")  # TINY's NIN: widths 8; count what each group must hold
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert set(by_name) == {
        "weights lr x1 decay x1",
        "weights lr x0.1 decay x1",
        "biases",
        "activation",
    }
    cls = by_name["weights lr x0.1 decay x1"]
    assert (cls["role"], cls["lr"], cls["weight_decay"]) == ("weight", pytest.approx(0.005), 1e-4)
    assert cls["layers"] == ["layers.20"] and cls["num_params"] == 8 * 10
    biases = by_name["biases"]
    assert (biases["lr"], biases["weight_decay"], biases["num_params"]) == (0.1, 0.0, 8 * 8 + 10)
    assert len(biases["layers"]) == len(convs)
    assert sum(g["num_params"] for g in recorded) == RunDir(tmp_path).read_summary()["num_params"]


# -- fixed FC fillers (the plain-net prototxts) and Caffe's Xavier ------------------------------


@pytest.mark.parametrize("init", ["he_fan_in", "he_fan_out", "he_average", "taylor", "xavier"])
def test_fixed_fc_fillers_survive_every_variance_mode(init):
    stds = [0.05, 0.02, 0.5]
    torch.manual_seed(0)
    model = tiny("plainnet", "elu", fc_widths=[200, 300], fc_std=stds)
    initialize(model, init)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for layer, std in zip(linears, stds, strict=True):
        assert layer.weight.std().item() == pytest.approx(std, rel=0.05)
        assert not layer.bias.any()


def test_fixed_fillers_leave_the_convs_to_the_mode_and_lsuv_ignores_them():
    def conv_and_fc(init: str, **kw) -> tuple[float, float]:
        torch.manual_seed(0)
        model = tiny("plainnet", "relu", fc_std=[0.01, 0.01, 0.001])
        initialize(model, init, **kw)
        return model.weight_layers()[1][0].weight.std().item(), model.layers[-1].weight.std()

    (conv_in, fc_in), (conv_out, fc_out) = conv_and_fc("he_fan_in"), conv_and_fc("he_fan_out")
    assert conv_in == pytest.approx(math.sqrt(2 / (4 * 4)), rel=0.15)  # 2x2 conv, 4 in, 8 out
    assert conv_out == pytest.approx(math.sqrt(2 / (4 * 8)), rel=0.15)
    assert fc_in == fc_out  # same draws: the mode never reaches the classifier
    _, fc_lsuv = conv_and_fc("lsuv", batches=lambda i: torch.randn(32, 3, 32, 32))
    assert fc_lsuv > 0.1  # rescaled to unit output variance, not left at 0.001


def test_fc_std_must_name_every_fc():
    with pytest.raises(ValueError, match=r"model.fc_std=\[0.01\] is not allowed; use null or 3"):
        tiny("plainnet", fc_std=[0.01])


def test_caffe_xavier_counts_fan_in():
    conv = nn.Conv2d(16, 64, 3)

    class One(nn.Module):
        def weight_layers(self):
            return [(conv, None)]

    initialize(One(), "xavier", mode="fan_in")  # filler.hpp:150-160: sqrt(3 / fan_in)
    bound = math.sqrt(3 / (16 * 9))
    assert conv.weight.abs().max().item() <= bound
    assert conv.weight.abs().max().item() > 0.98 * bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)


# -- cxxnet's PReLU --------------------------------------------------------------------------------


def cxxnet_prelu(slopes: torch.Tensor) -> activations.Activation:
    unit = activations.build("prelu", num_channels=len(slopes), clip=True).double()
    with torch.no_grad():
        unit.weight.copy_(slopes)
    return unit


def test_clipped_prelu_gradcheck_inside_the_clip():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    x = torch.where(x.abs() < 0.05, 0.5, x).requires_grad_()  # away from the kink at 0
    unit = cxxnet_prelu(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x, a: _prelu_with(unit, a, x), (x, unit.weight))


def _prelu_with(unit, a, x):
    saved = unit.weight
    unit.weight = a
    try:
        return unit(x)
    finally:
        unit.weight = saved


def test_clipped_prelu_values_and_cxxnet_gradients_outside_the_clip():
    x = torch.tensor([[-2.0, 1.5, -0.5], [3.0, -1.0, -4.0]], dtype=torch.float64)
    x.requires_grad_()
    slopes = torch.tensor([-0.5, 0.3, 1.7], dtype=torch.float64)
    unit = cxxnet_prelu(slopes)
    out = unit(x)
    clipped = slopes.clamp(0, 1)  # prelu_layer-inl.hpp:134: mask = max(min(1, slope), 0)
    assert torch.equal(out, torch.where(x > 0, x, clipped * x))
    g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    out.backward(g)
    # :148: the input gradient uses the clipped slope
    assert torch.allclose(x.grad, torch.where(x > 0, 1.0, clipped) * g)
    # :146: the slope gradient is sum over x <= 0 of x * grad, whatever the clip did
    assert torch.allclose(unit.weight.grad, (torch.where(x > 0, 0.0, x) * g).sum(0))
    plain = activations.build("prelu", num_channels=3).double()
    with torch.no_grad():
        plain.weight.copy_(slopes)
    assert not torch.equal(plain(x), out)  # off by default: the Caffe/He PReLU is unclipped


# -- Caffe's crop layout ---------------------------------------------------------------------------


def shapes_task(**options):
    sizes = {"train_size": 300, "test_size": 50, "val_size": 50, "batch_size": 64}
    return build_task(
        "shapes", device="cpu", seed=0, data_dir=Path("."), preprocess="none", **sizes, **options
    )


def test_caffe_crops_are_unpadded_windows_at_every_origin():
    task = shapes_task(crop_size=28)
    stored = task.splits["train"][0].float() / 255
    seen = set()
    for step in range(12):
        x, _ = task.train_batch(step)
        assert x.shape[-2:] == (28, 28)
        epoch, i = divmod(step, task.steps_per_epoch)
        idx = task._permutation(epoch)[i * 64 : (i + 1) * 64]
        for image, source in zip(x, stored[idx], strict=True):
            windows = {
                (top, left, flip)
                for top in range(5)
                for left in range(5)
                for flip in (False, True)
                if torch.equal(
                    image,
                    (lambda w: w.flip(-1) if flip else w)(
                        source[:, top : top + 28, left : left + 28]
                    ),
                )
            }
            assert windows, "a training crop is not a window of its image"
            seen |= windows
    assert {(t, left) for t, left, _ in seen} == {(t, u) for t in range(5) for u in range(5)}
    assert {f for _, _, f in seen} == {False, True}


def test_caffe_crop_evaluates_the_centre_and_nin_pools_to_7():
    task = shapes_task(crop_size=28)
    assert torch.equal(task.probe_batch(), task.splits["train"][0][:64, :, 2:30, 2:30] / 255)
    no_aug = shapes_task(crop_size=28, augment=False)  # no augmentation: the centre crops
    idx = no_aug._permutation(0)[:64]
    expected = no_aug.splits["train"][0][idx][:, :, 2:30, 2:30] / 255
    assert torch.equal(no_aug.train_batch(0)[0], expected)
    shapes_seen = []
    model = tiny("nin", "relu")
    model.layers[-2].register_forward_hook(lambda m, i, out: shapes_seen.append(i[0].shape[-1]))
    task.evaluate(model, "val")
    assert shapes_seen and set(shapes_seen) == {7}  # Caffe's pool3: AVE kernel 7 over 7x7 maps
    assert task.meta["crop_size"] == 28


def test_crop_size_must_fit_the_image():
    with pytest.raises(ValueError, match=r"dataset.crop_size=32 is not allowed; use null"):
        shapes_task(crop_size=32)


# -- char-rnn: per-step divergence stop, carried hidden state --------------------------------------


@pytest.mark.parametrize(("check", "status"), [("window", "completed"), ("step", "diverged")])
def test_one_spiking_step_stops_only_the_per_step_check(
    check, status, tiny_config, tmp_path, monkeypatch
):
    """Losses 1, 1, 4, 1 in a log window of 4: its mean 1.75 is under 3x the first, one step is
    not (train.lua:364-372 stops on it)."""
    scripted = [1.0, 1.0, 4.0, 1.0]
    real_build = experiments.components.build

    def build(cfg):
        parts = real_build(cfg)
        parts.task.training_loss = lambda model, batch, step: (
            model(batch[0]).sum() * 0 + scripted[step]
        )
        return parts

    monkeypatch.setattr(experiments.components, "build", build)
    cfg = tiny_config(*TINY_PLAINNET, "trainer.log_every=4", f"trainer.divergence_check={check}")
    assert run(cfg, tmp_path) == status
    rows = read_csv(RunDir(tmp_path).metrics)
    if status == "diverged":
        assert RunDir(tmp_path).read_summary()["diverged_step"] == 3
        assert [(r["step"], float(r["train_loss"])) for r in rows] == [("3", 2.0)]
    else:
        assert [(r["step"], float(r["train_loss"])) for r in rows] == [("4", 1.75)]


def test_hidden_state_runs_on_across_the_epoch_wrap(tmp_path: Path) -> None:
    task = text_task(tmp_path, sample_text(400), carry_across_epochs=True)
    spe = task.steps_per_epoch
    model = Spy(task.num_outputs)
    for step in range(spe + 2):
        task.training_loss(model, task.train_batch(step), step)
    assert model.seen[0] is None  # the first step starts from zeros (init_state_global)
    assert model.seen[spe] is not None  # ... and the wrap does not reset it (train.lua:265,296)


def test_describe_groups_reads_back_the_optimizer():
    model = tiny("plainnet", "relu")
    groups = param_groups(
        model,
        lr=0.01,
        weight_decay=5e-4,
        multipliers=[{"role": "bias", "lr_mult": 2, "decay_mult": 0}],
    )
    optimizer = torch.optim.SGD(groups, lr=0.01)
    described = describe_groups(optimizer)
    assert [(g["role"], g["lr"], g["weight_decay"]) for g in described] == [
        ("weight", 0.01, 5e-4),
        ("bias", 0.02, 0.0),
    ]
    assert sum(g["num_params"] for g in described) == sum(p.numel() for p in model.parameters())

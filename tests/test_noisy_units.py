"""The noisy units' noise against Gulcehre et al. 2016's Algorithm 1: where it appears, its
distribution, and that evaluation mode uses its expectation. Formulas and gradchecks of these
units live with every other unit's in test_activations.py."""

from __future__ import annotations

import math

import pytest
import torch

import activations

N = 200_000  # draws per statistic: the standard error of a mean is sigma / 447


def _draws(name: str, value: float, **params: object) -> torch.Tensor:
    """N training-mode outputs of unit ``name`` (one channel) at input ``value``, seeded."""
    unit = activations.build(name, num_channels=1, **params).double().train()
    unit.generator = torch.Generator().manual_seed(0)
    x = torch.full((N, 1), value, dtype=torch.float64)
    with torch.no_grad():
        return unit(x).view(-1)


def _sigma(h: float, u: float, c: float, p: float = 1.0) -> float:
    return c * (1 / (1 + math.exp(-p * (h - u))) - 0.5) ** 2


# (unit, input in saturation, h(x), u(x), alpha, c)
SATURATED = [
    ("noisy_hard_tanh", 3.0, 1.0, 3.0, 1.15, 0.5),
    ("noisy_hard_tanh", -2.5, -1.0, -2.5, 1.15, 0.5),
    ("noisy_hard_sigmoid", 10.0, 1.0, 3.0, 1.1, 0.15),
    ("noisy_hard_sigmoid", -10.0, 0.0, -2.0, 1.1, 0.15),
]


@pytest.mark.parametrize("name,x,h,u,alpha,c", SATURATED)
def test_noise_where_saturated_is_half_normal_scaled_by_sigma_towards_the_linear_side(
    name, x, h, u, alpha, c
):
    noise = _draws(name, x) - (alpha * h + (1 - alpha) * u)
    sigma = _sigma(h, u, c)
    d = -math.copysign(1.0, x) * math.copysign(1.0, 1 - alpha)
    assert sigma > 0.01
    assert torch.all(noise * d >= 0)  # one-sided: the half-normal's sign is d's
    half_normal_mean, half_normal_var = math.sqrt(2 / math.pi), 1 - 2 / math.pi  # of |xi|
    assert noise.mean().item() == pytest.approx(d * sigma * half_normal_mean, rel=0.01)
    assert noise.var().item() == pytest.approx(sigma**2 * half_normal_var, rel=0.02)


LINEAR = [
    ("noisy_hard_tanh", 0.7),
    ("noisy_hard_tanh", -0.99),
    ("noisy_hard_sigmoid", 1.9),
    ("noisy_hard_sigmoid", -1.2),
]


@pytest.mark.parametrize("name,x", LINEAR)
def test_no_noise_in_the_linear_region(name, x):
    y = _draws(name, x)
    expected = x if name == "noisy_hard_tanh" else 0.25 * x + 0.5
    assert torch.all(y == y[0])  # every draw the same: no noise
    assert y[0].item() == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("name,x", [("noisy_hard_tanh", 2.0), ("noisy_hard_sigmoid", -3.0)])
def test_evaluation_output_is_the_expectation_of_the_training_output(name, x):
    train_mean = _draws(name, x).mean().item()
    unit = activations.build(name, num_channels=1).double().eval()
    y = unit(torch.full((1, 1), x, dtype=torch.float64)).item()
    assert y == pytest.approx(train_mean, abs=3e-4)


def test_alpha_one_gives_the_hard_unit_without_noise():
    y = _draws("noisy_hard_tanh", 3.0, alpha=1.0)
    assert torch.all(y == 1.0)


def test_p_is_learned_per_channel_where_saturated_only():
    unit = activations.build("noisy_hard_tanh", num_channels=2).double().train()
    unit.generator = torch.Generator().manual_seed(0)
    x = torch.tensor([[3.0, 0.5]], dtype=torch.float64)  # channel 0 saturated, channel 1 linear
    unit(x).sum().backward()
    assert unit.p.grad[0] != 0 and unit.p.grad[1] == 0
    assert any(p is unit.p for p in activations.activation_parameters(unit))


def test_noisy_relu_adds_zero_mean_noise_of_std_c_to_the_input():
    y = _draws("noisy_relu", 5.0)
    assert (y - 5.0).mean().item() == pytest.approx(0.0, abs=4 * 0.05 / math.sqrt(N))
    assert (y - 5.0).std().item() == pytest.approx(0.05, rel=0.01)
    assert torch.all(_draws("noisy_relu", -5.0) == 0)  # 100 standard deviations below zero
    near = _draws("noisy_relu", 0.0)
    assert 0.45 < (near > 0).double().mean().item() < 0.55  # noise decides around the kink
    unit = activations.build("noisy_relu").eval()
    x = torch.randn(100)
    assert torch.equal(unit(x), torch.relu(x))


def test_training_draws_are_fresh_each_call_and_reproducible_with_a_generator():
    unit = activations.build("noisy_hard_sigmoid", num_channels=3).train()
    x = torch.full((4, 3), 5.0)
    assert unit.draws_random and not unit.eval().draws_random
    unit.train()
    assert not torch.equal(unit(x), unit(x))
    unit.generator = torch.Generator().manual_seed(3)
    first = unit(x)
    unit.generator = torch.Generator().manual_seed(3)
    assert torch.equal(first, unit(x))


def test_hard_sigmoid_is_the_papers_not_torchs():
    x = torch.tensor([-3.0, -1.0, 1.0, 3.0])
    y = activations.build("hard_sigmoid")(x)
    torch.testing.assert_close(y, torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert not torch.allclose(y, torch.nn.functional.hardsigmoid(x))

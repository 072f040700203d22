"""activations.registry.Registry, the one name -> builder table every group uses: a builder
passes through in place of its name (as timm's factories allow), an unknown name or key fails
in one line naming it and the choices, and validation reads the same signature."""

from __future__ import annotations

import pytest

import activations
from activations.rectifiers import LeakyReLU
from activations.registry import ACTIVATIONS, Registry
from experiments.data import DATASETS
from experiments.inits import INITS
from experiments.models import MODELS
from experiments.optim import OPTIMIZERS, SCHEDULES


def _scale(factor: float = 2.0, *, offset: int = 0) -> float:
    return factor + offset


def test_a_builder_passes_through_in_place_of_its_name() -> None:
    table: Registry = Registry("thing")
    table.register("scale")(_scale)
    assert table.build("scale", factor=3.0) == table.build(_scale, factor=3.0) == 3.0
    unit = activations.build(LeakyReLU, num_channels=4, slope=0.2)
    assert isinstance(unit, LeakyReLU) and unit.slope == 0.2


def test_unknown_names_and_keys_fail_in_one_line_with_the_choices() -> None:
    table: Registry = Registry("thing", builders={"scale": _scale, "other": _scale})
    with pytest.raises(ValueError, match=r"^unknown thing 'scal'; choose from: other, scale$"):
        table.get("scal")
    with pytest.raises(
        ValueError, match=r"^thing 'scale' has no option 'facter'; valid: factor, offset$"
    ):
        table.build("scale", facter=1.0)
    with pytest.raises(ValueError, match="registered twice"):
        table.register("scale")(_scale)


def test_fixed_arguments_are_not_config_keys_and_hints_type_the_rest() -> None:
    table: Registry = Registry("thing", fixed=("factor",))
    table.register("scale")(_scale)
    assert table.defaults("scale") == {"offset": 0}
    assert table.parameters("scale")["offset"].annotation is int
    assert table.build("scale", factor=5.0, offset=1) == 6.0


def test_activation_names_are_case_insensitive_and_every_group_shares_the_type() -> None:
    assert ACTIVATIONS.get("ReLU") is ACTIVATIONS.get("relu")
    for registry in (ACTIVATIONS, MODELS, DATASETS, INITS, OPTIMIZERS, SCHEDULES):
        assert type(registry) is Registry
    assert OPTIMIZERS.names() == ["adagrad", "adam", "rmsprop", "sgd"]
    assert SCHEDULES.names() == ["constant", "cosine", "exponential", "multistep"]

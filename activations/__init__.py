"""actlab's activation library: ``build(name, num_channels=C, **params)`` and ``names()``."""

from activations import units as _units  # noqa: F401  (registers every unit)
from activations.base import Activation
from activations.registry import activation_parameters, build, names, parameters_of, register

__all__ = ["Activation", "activation_parameters", "build", "names", "parameters_of", "register"]

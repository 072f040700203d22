"""actlab's activation library: ``build(name, num_channels=C, channel_dim=1, **params)``.

Importing the package registers every unit; ``names()`` lists them. ``set_backend`` chooses
how the fused units (rrelu, mpelu, tlu, elu, prelu) run (see ``activations.backend``).
"""

from activations import channels as _channels  # noqa: F401  (the imports register the units)
from activations import noisy as _noisy  # noqa: F401
from activations import parametric as _parametric  # noqa: F401
from activations import rectifiers as _rectifiers  # noqa: F401
from activations import smooth as _smooth  # noqa: F401
from activations.backend import BACKENDS, get_backend, set_backend, use_backend
from activations.base import Activation
from activations.registry import activation_parameters, build, names, parameters_of, register

__all__ = [
    "BACKENDS",
    "Activation",
    "activation_parameters",
    "build",
    "get_backend",
    "names",
    "parameters_of",
    "register",
    "set_backend",
    "use_backend",
]

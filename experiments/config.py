"""Config schemas and the checks that run before any work.

Hydra composes the config; this module makes its mistakes cheap. Typed dataclass schemas,
registered in Hydra's ConfigStore under ``schema/`` and pulled in by each group YAML's defaults
list, reject misspelt keys and wrong types while Hydra composes. hydra_plugins/actlab/schemas.py
registers them (and the ``actlab.*`` resolvers) when Hydra composes: importing this module
registers nothing. ``validate`` then checks ranges and the name-dependent groups (activation,
model, dataset, init) against their builders' signatures (activations.registry.Registry), before
a dataset is loaded or a file written. ``describe_error`` turns Hydra's multi-line composition
errors into one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException, MissingConfigException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config value or key that cannot work; its message is one line naming it."""


def _range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> dict[str, Any]:
    """Dataclass field metadata: the value (when not None) must lie in this interval."""
    return {"range": (low, high, low_open, high_open)}


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _positive() -> dict[str, Any]:
    return _range(0, low_open=True)


def _at_least_one() -> dict[str, Any]:
    return _range(1)


# ---------------------------------------------------------------------------------------------
# Schemas (defaults live in the YAMLs; these say what keys exist, their types and ranges)


@dataclass
class DiagnosticsConfig:
    """Per-layer diagnostics (experiments/diagnostics.py); null or 0 turns them off."""

    every: int | None = None  # checked in _check_trainer (nested nodes have no range checks)


@dataclass
class TrainerConfig:
    """How long to train, how often to log / evaluate / checkpoint, and where."""

    max_steps: int | None = field(default=None, metadata=_at_least_one())
    max_epochs: float | None = field(default=None, metadata=_positive())
    max_time_s: float | None = field(default=None, metadata=_positive())
    log_every: int = field(default=50, metadata=_at_least_one())
    eval_every: int | None = field(default=None, metadata=_at_least_one())
    checkpoint_every: int | None = field(default=None, metadata=_at_least_one())
    resume: bool = True
    device: str = "auto"
    precision: str = field(default="fp32", metadata=_choices("fp32", "bf16", "auto"))
    deterministic: bool = False
    threads: int | None = field(default=None, metadata=_at_least_one())
    channels_last: bool = True
    compile: bool = False
    flush_denormal: bool = False
    reuse_freed_memory: bool = True
    #: activations.BACKENDS, spelled out so this module needs no torch import
    activation_backend: str | None = field(
        default=None, metadata=_choices("auto", "compiled", "eager", "reference")
    )
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    grad_clip_norm: float | None = field(default=None, metadata=_positive())
    grad_clip_value: float | None = field(default=None, metadata=_positive())
    log_grad_norm: bool = True
    divergence_factor: float | None = field(default=None, metadata=_range(1, low_open=True))
    #: "window": the mean loss of each log window (Caffe replicas); "step": every iteration's
    #: loss, as char-rnn's train.lua
    divergence_check: str = field(default="window", metadata=_choices("window", "step"))


@dataclass
class PathsConfig:
    results_dir: str = "results"
    data_dir: str = "data"


@dataclass
class MultiplierRule:
    """One Caffe ``param { lr_mult decay_mult }`` rule (experiments.optim): the parameters of
    ``role`` (any if null) in ``layer`` (any if null; ``classifier``, an index into the model's
    weight layers, or a module-name pattern) get these multipliers; null keeps the earlier."""

    role: str | None = field(default=None, metadata=_choices("weight", "bias", "activation"))
    layer: str | None = None
    lr_mult: float | None = field(default=None, metadata=_range(0))
    decay_mult: float | None = field(default=None, metadata=_range(0))


@dataclass
class OptimizerConfig:
    """Keys every optimizer has: the parameter-group policy and the base rate."""

    name: str = MISSING
    lr: float = field(default=MISSING, metadata=_positive())
    weight_decay: float = field(default=0.0, metadata=_range(0))
    act_lr_mult: float = field(default=1.0, metadata=_range(0))
    act_weight_decay_mult: float = field(default=1.0, metadata=_range(0))
    bias_weight_decay: bool = True
    multipliers: list[MultiplierRule] = field(default_factory=list)


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = field(default=0.0, metadata=_range(0, 1, high_open=True))
    nesterov: bool = False


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = field(default=1e-8, metadata=_positive())


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = field(default=0.99, metadata=_range(0, 1, low_open=True, high_open=True))
    eps: float = field(default=1e-8, metadata=_positive())
    momentum: float = field(default=0.0, metadata=_range(0, 1, high_open=True))


@dataclass
class AdagradConfig(OptimizerConfig):
    lr_decay: float = field(default=0.0, metadata=_range(0))
    initial_accumulator_value: float = field(default=0.0, metadata=_range(0))
    eps: float = field(default=1e-10, metadata=_positive())


@dataclass
class ScheduleConfig:
    name: str = MISSING


@dataclass
class ConstantSchedule(ScheduleConfig):
    pass


@dataclass
class MultiStepSchedule(ScheduleConfig):
    milestones: list[float] = field(default_factory=list)
    gamma: float = field(default=0.1, metadata=_positive())
    unit: str = field(default="steps", metadata=_choices("steps", "epochs"))


@dataclass
class CosineSchedule(ScheduleConfig):
    final_lr_mult: float = field(default=0.0, metadata=_range(0, 1))


@dataclass
class ExponentialSchedule(ScheduleConfig):
    gamma: float = field(default=0.97, metadata=_positive())
    unit: str = field(default="epochs", metadata=_choices("steps", "epochs"))
    start: int = field(default=1, metadata=_at_least_one())


@dataclass
class LoggerConfig:
    """Where the numbers go besides metrics.csv / eval.csv (experiments/loggers.py)."""

    name: str = field(default="csv", metadata=_choices("csv", "tensorboard", "mlflow", "wandb"))


@dataclass
class MLflowLogger(LoggerConfig):
    tracking_uri: str | None = None  # null: a file store in <paths.results_dir>/mlruns


@dataclass
class WandbLogger(LoggerConfig):
    project: str = "actlab"
    mode: str = field(default="offline", metadata=_choices("offline", "online", "disabled"))


SCHEMAS: dict[str, type] = {
    "trainer": TrainerConfig,
    "paths": PathsConfig,
    "optimizer/sgd": SGDConfig,
    "optimizer/adam": AdamConfig,
    "optimizer/rmsprop": RMSpropConfig,
    "optimizer/adagrad": AdagradConfig,
    "schedule/constant": ConstantSchedule,
    "schedule/multistep": MultiStepSchedule,
    "schedule/cosine": CosineSchedule,
    "schedule/exponential": ExponentialSchedule,
    "logger/csv": LoggerConfig,
    "logger/tensorboard": LoggerConfig,
    "logger/mlflow": MLflowLogger,
    "logger/wandb": WandbLogger,
}


def register_schemas() -> None:
    """Store every schema as ``schema/<group>[/<name>]`` (YAMLs include them ``@_here_``)."""
    store = ConfigStore.instance()
    for path, node in SCHEMAS.items():
        group, _, name = path.rpartition("/")
        store.store(group=f"schema/{group}".rstrip("/"), name=name, node=node)


# ---------------------------------------------------------------------------------------------
# Run directories, checked as Hydra computes them (configs/hydra/default.yaml)


def check_name(key: str, value: Any) -> str:
    """A path component: ``experiment_name`` and ``run_name`` never leave their parent."""
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\0" in value:
        raise ConfigError(f"{key}={value!r} is not allowed; use a non-empty name without '/'")
    return value


def check_results_dir(value: Any) -> str:
    """paths.results_dir: an empty one would put runs at the filesystem root."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"paths.results_dir={value!r} is empty (is ACTLAB_RESULTS set to an empty string?); "
            "set it to a directory, e.g. paths.results_dir=results"
        )
    return value


def run_directory(results_dir: Any, experiment_name: Any, run_name: Any = None) -> str:
    """``${actlab.run_dir:...}``: results_dir/experiment_name[/run_name], each part checked
    when Hydra first resolves the directory, i.e. before it creates it or writes
    multirun.yaml into it: a bad value is refused before anything exists on disk."""
    parts = [check_results_dir(results_dir), check_name("experiment_name", experiment_name)]
    if run_name is not None:
        parts.append(check_name("run_name", run_name))
    return "/".join(parts)


def register_resolvers() -> None:
    """``actlab.run_dir`` and ``actlab.run_name``, used by hydra.run.dir and hydra.sweep.*."""
    OmegaConf.register_new_resolver("actlab.run_dir", run_directory, replace=True)
    OmegaConf.register_new_resolver(
        "actlab.run_name", lambda value: check_name("run_name", value), replace=True
    )


# ---------------------------------------------------------------------------------------------
# Validation


def validate(cfg: DictConfig) -> None:
    """Check all that needs no data; raise ConfigError (one line) on the first fault."""
    _check_top_level(cfg)
    for group in ("trainer", "paths", "optimizer", "schedule", "logger"):
        _check_schema_node(cfg[group], group)
    _check_trainer(cfg.trainer)
    for i, rule in enumerate(cfg.optimizer.multipliers):
        _check_schema_node(rule, f"optimizer.multipliers[{i}]")
    for group, parameters_of in _named_groups().items():
        _check_named_group(cfg[group], group, parameters_of)
    _check_finite(OmegaConf.to_container(cfg, resolve=True))


def _check_finite(node: Any, key: str = "") -> None:
    """No number in a config may be inf or NaN: a range check lets inf through (inf > 0),
    and an inf learning rate would train to a meaningless ``diverged`` result."""
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, f"{key}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{key}={node!r} is not a finite number; give a finite value")


def _check_top_level(cfg: DictConfig) -> None:
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} is not allowed; use an integer >= 0")
    for key in ("experiment_name", "run_name"):
        check_name(key, cfg.get(key))
    check_results_dir(cfg.paths.get("results_dir"))
    if not str(cfg.paths.get("data_dir") or "").strip():
        raise ConfigError(
            f"paths.data_dir={cfg.paths.get('data_dir')!r} is empty (is ACTLAB_DATA set to an "
            "empty string?); set it to a directory, e.g. paths.data_dir=data"
        )


def _check_schema_node(node: Any, group: str) -> None:
    schema = OmegaConf.get_type(node)
    if not isinstance(node, DictConfig) or not dataclasses.is_dataclass(schema):
        raise ConfigError(
            f"config group {group!r} has no schema; its YAML must list "
            f"/schema/{group}[/<name>]@_here_ in its defaults"
        )
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        if key not in fields:
            raise ConfigError(unknown_key_message(f"{group}.{key}", list(fields)))
    for name, f in fields.items():
        value = node[name]
        if value is None:
            continue
        bounds = f.metadata.get("range")
        if bounds is not None and not _in_range(value, *bounds):
            raise ConfigError(f"{group}.{name}={value!r} is out of range; {_describe(*bounds)}")
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(
                f"{group}.{name}={value!r} is not allowed; choose from: {', '.join(choices)}"
            )


def _in_range(value: float, low: Any, high: Any, low_open: bool, high_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


def _describe(low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"> {low}" if low_open else f">= {low}")
    if high is not None:
        parts.append(f"< {high}" if high_open else f"<= {high}")
    return "must be " + " and ".join(parts)


def _check_trainer(trainer: DictConfig) -> None:
    if trainer.max_steps is None and trainer.max_epochs is None:
        raise ConfigError("set trainer.max_steps or trainer.max_epochs (both are null)")
    every = trainer.diagnostics.every
    if every is not None and every < 0:
        raise ConfigError(
            f"trainer.diagnostics.every={every!r} is out of range; use null or 0 (off) or N >= 1"
        )
    if trainer.device != "auto":
        import torch

        try:
            device = torch.device(trainer.device)
        except RuntimeError:
            raise ConfigError(
                f"trainer.device={trainer.device!r} is not a device; use auto, cpu, cuda or cuda:N"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"trainer.device={trainer.device!r} but CUDA is not available")
    if trainer.compile:
        _check_cpu_compiler(trainer.device)


def _check_cpu_compiler(device: str) -> None:
    """torch.compile on the CPU generates C++: without a compiler it fails at the first step
    with a traceback of a hundred lines, so look for one first (the compiler torch will use)."""
    import torch

    if (
        device == "cuda"
        or device.startswith("cuda:")
        or (device == "auto" and torch.cuda.is_available())
    ):
        return
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # another torch layout: let torch.compile report it
        return
    try:
        get_cpp_compiler()
    except Exception as err:  # torch raises InvalidCxxCompiler (a RuntimeError) with a long text
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            "trainer.compile=true needs a C++ compiler on the CPU (torch.compile generates C++), "
            f"and none was found ({first[:120]}); install one (e.g. g++) or set CXX, or set "
            "trainer.compile=false"
        ) from None


Parameters = Callable[[str], dict[str, inspect.Parameter]]


def _named_groups() -> dict[str, Parameters]:
    """group -> (builder name -> the parameters a config may set)."""
    from activations.registry import ACTIVATIONS
    from experiments import inits
    from experiments.data import DATASETS
    from experiments.data import _load_all as load_datasets
    from experiments.models import MODELS
    from experiments.models import _load_all as load_models

    load_datasets()
    load_models()
    return {
        "activation": ACTIVATIONS.parameters,
        "model": MODELS.parameters,
        "dataset": DATASETS.parameters,
        "init": inits.INITS.parameters,
    }


def _check_named_group(node: Any, group: str, parameters_of: Parameters) -> None:
    """Keys must be the builder's parameters; values must fit their annotations."""
    if not isinstance(node, DictConfig) or "name" not in node:
        raise ConfigError(f"config group {group!r} needs a 'name' key")
    name = node.name
    try:
        params = parameters_of(name)
    except ValueError as err:  # the registry's "unknown <kind> ...; choose from: ..."
        raise ConfigError(str(err)) from None
    options = OmegaConf.to_container(node, resolve=True)
    assert isinstance(options, dict)
    options.pop("name")
    for key, value in options.items():
        if key not in params:
            raise ConfigError(
                unknown_key_message(f"{group}.{key}", list(params), f"{group} {name!r}")
            )
        annotation = params[key].annotation
        if not _matches(annotation, value):
            raise ConfigError(
                f"{group}.{key}={value!r} has the wrong type; {group} {name!r} expects "
                f"{_type_name(annotation)}"
            )
    missing = [k for k, p in params.items() if p.default is p.empty and k not in options]
    if missing:
        raise ConfigError(f"{group} {name!r} needs {group}.{missing[0]}")


def _matches(annotation: Any, value: Any) -> bool:
    """Does a plain YAML value fit ``annotation``? Unknown annotations accept anything."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(a, value) for a in args)
    if origin is Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    container = origin or annotation
    if isinstance(container, type) and issubclass(container, Sequence) and container is not str:
        if not isinstance(value, list | tuple):
            return False
        if container is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(map(_matches, args, value))
        return not args or all(_matches(args[0], v) for v in value)
    return True


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("collections.abc.", "")


# ---------------------------------------------------------------------------------------------
# One-line errors


def _config_error_in_chain(exc: BaseException) -> ConfigError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ConfigError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def unknown_key_message(full_key: str, valid: Sequence[str], owner: str | None = None) -> str:
    """The one-line unknown-key message, with a did-you-mean when a valid key is close."""
    prefix, _, key = full_key.rpartition(".")
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
    listing = ", ".join(v for v in valid if v != "hydra") or "none"
    where = f"valid keys of {owner or prefix}" if owner or prefix else "valid top-level keys"
    return f"unknown config key '{full_key}'{hint} ({where}: {listing})"


def describe_error(exc: BaseException) -> str:
    """One line for an error met while composing or validating a config (or building a run)."""
    inner = _config_error_in_chain(exc)
    if inner is not None:  # raised by a resolver (actlab.run_dir), wrapped by OmegaConf
        return str(inner)
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, choice = exc.missing_cfg_file.rpartition("/")
        return f"unknown {group} {choice!r}; choose from: {', '.join(sorted(exc.options))}"
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        message = str(cause.msg).splitlines()[0] if cause.msg else str(exc).splitlines()[0]
        if " not in " in message and isinstance(cause.parent_node, DictConfig):
            return unknown_key_message(cause.full_key, [str(k) for k in cause.parent_node])
        return f"{cause.full_key}: {message}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if isinstance(exc, ValueError | OSError | HydraException) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

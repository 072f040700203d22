"""Study presets (configs/experiment/): each composes, and its sweep is the intended one.

A preset's job list is computed in-process the way Hydra's BasicSweeper computes it (its
``hydra.sweeper.params`` parsed into overrides, then the cartesian product), every job is
composed and validated as the trainer would, and the jobs are compared with the product the
study means, written down below from the papers (docs/papers.md), independently of the
YAML. The presets are found by listing the directory, so a new one is checked at once (and
fails until its intended sweep is written into INTENDED).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.config import validate
from experiments.report import published
from experiments.report.claims import parse_claims
from experiments.report.groups import group_runs, select
from experiments.report.runs import load_run
from experiments.report.settings import from_config
from experiments.train import CONFIG_DIR

EXPERIMENTS = CONFIG_DIR / "experiment"
#: the study presets (``experiment=<name>``) ...
PRESETS = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
#: ... and the parts they include (unit/, recipe/), which must compose on their own too.
PARTS = sorted(
    p.relative_to(EXPERIMENTS).with_suffix("").as_posix() for p in EXPERIMENTS.glob("*/*.yaml")
)
#: a run name is one readable path component
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


# ---------------------------------------------------------------------------------------------
# What each study means to run (from the papers, not from the YAML)


@dataclass(frozen=True)
class Intent:
    """The cartesian product of ``axes`` (each a list of config facts: dotted key -> value),
    every job also having ``fixed``; a job is matched on the keys its facts name."""

    axes: tuple[tuple[dict[str, Any], ...], ...]
    fixed: dict[str, Any] = field(default_factory=dict)

    def jobs(self) -> list[dict[str, Any]]:
        return [
            {k: v for facts in (self.fixed, *combo) for k, v in facts.items()}
            for combo in itertools.product(*self.axes)
        ]


def axis(key: str, *values: Any) -> tuple[dict[str, Any], ...]:
    return tuple({key: v} for v in values)


def seeds(*values: int) -> tuple[dict[str, Any], ...]:
    return axis("seed", *values)


def unit(name: str, **settings: Any) -> dict[str, Any]:
    """An activation by name; ``settings`` are dotted keys with '__' for '.' (optimizer__lr)."""
    return {"activation.name": name, **{k.replace("__", "."): v for k, v in settings.items()}}


#: Caffe's default multipliers for learnable unit parameters: lr_mult 1, decay_mult 1.
CAFFE_MULTS = {"optimizer__act_lr_mult": 1.0, "optimizer__act_weight_decay_mult": 1.0}
RELU, ELU = unit("relu", **CAFFE_MULTS), unit("elu", **CAFFE_MULTS)
PRELU = unit(
    "prelu",
    activation__init=0.25,
    activation__channelwise=True,
    activation__clip=False,
    **CAFFE_MULTS,
)
#: cxxnet's PReLU (Xu et al.'s code): slopes clipped to [0, 1], updated as biases (lr x2, no decay).
PRELU_CXXNET = unit(
    "prelu",
    activation__init=0.25,
    activation__clip=True,
    optimizer__act_lr_mult=2.0,
    optimizer__act_weight_decay_mult=0.0,
)
#: Xu et al.: Leaky ReLU "a = 100" and "a = 5.5" are slopes 1/100 and 1/5.5; RReLU a ~ U(3, 8).
XU_UNITS = (
    RELU,
    unit("lrelu", activation__slope=1 / 100),
    unit("lrelu", activation__slope=1 / 5.5),
    PRELU_CXXNET,
    unit("rrelu", activation__lower=3.0, activation__upper=8.0),
)
#: nin_m2pelu_gauss: alpha 0.25, beta 1, lr_mult 2, decay_mult 5.
MPELU_NIN = unit(
    "mpelu",
    activation__alpha=0.25,
    activation__beta=1.0,
    optimizer__act_lr_mult=2.0,
    optimizer__act_weight_decay_mult=5.0,
)
#: nin_mpelu_gauss (train.sh's default): alpha 1, beta 1, lr_mult 2, decay_mult 0.
MPELU_NIN_GAUSS = unit(
    "mpelu",
    activation__alpha=1.0,
    activation__beta=1.0,
    optimizer__act_lr_mult=2.0,
    optimizer__act_weight_decay_mult=0.0,
)
#: layer30_mpelu_taylor: alpha 1, beta 1, lr_mult 1, decay_mult 0.
MPELU_PLAIN = unit(
    "mpelu",
    activation__alpha=1.0,
    activation__beta=1.0,
    optimizer__act_lr_mult=1.0,
    optimizer__act_weight_decay_mult=0.0,
)
#: The NIN model-zoo / MPELU Caffe solver and net (docs/papers.md §1, §7).
NIN_CAFFE = {
    "model.name": "nin",
    "model.widths": [192, 160, 96, 192, 192, 192, 192, 192],
    "model.dropout": 0.5,
    "init.name": "gaussian",
    "init.std": 0.05,
    "optimizer.name": "sgd",
    "optimizer.lr": 0.1,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 1e-4,
    "dataset.batch_size": 128,
    "dataset.crop_size": 28,
    "dataset.preprocess": "gcn_zca",
    "schedule.name": "multistep",
    "schedule.milestones": [100000],
    "schedule.gamma": 0.1,
    "trainer.max_steps": 120000,
}
#: The MPELU authors' 30-layer solver (docs/papers.md §1): lr 0.01, momentum 0.9, wd 5e-4, batch 64.
PLAIN_CAFFE = {
    "model.name": "plainnet",
    "model.bn": False,
    "optimizer.name": "sgd",
    "optimizer.lr": 0.01,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 5e-4,
    "dataset.batch_size": 64,
    "schedule.name": "multistep",
    "schedule.gamma": 0.1,
}
HE_MODES = ("he_fan_in", "he_fan_out", "he_average")

INTENDED: dict[str, Intent] = {
    "quickstart": Intent(
        (axis("activation.name", "relu", "lrelu", "prelu", "rrelu", "elu", "mpelu"),),
        {"model.name": "nin", "dataset.name": "shapes", "seed": 0},
    ),
    "gru_linux_tlu": Intent(
        (axis("activation.name", "tanh", "sigmoid", "lrelu", "elu", "tlu"), seeds(1, 2)),
        {
            "model.name": "chargru",
            "dataset.name": "linux",
            "dataset.carry_across_epochs": True,
            "trainer.divergence_check": "step",
            "dataset.source": "kernel",
        },
    ),
    "nin_cifar10_mpelu": Intent(
        ((RELU, PRELU, ELU, MPELU_NIN, MPELU_NIN_GAUSS), seeds(1, 2, 3, 4, 5)),
        {**NIN_CAFFE, "dataset.name": "cifar10", "dataset.augment": True},
    ),
    "nin_cifar10_rectifiers": Intent(
        (XU_UNITS, seeds(1, 2, 3)),
        {**NIN_CAFFE, "dataset.name": "cifar10", "dataset.augment": False},
    ),
    "nin_cifar100_rectifiers": Intent(
        (XU_UNITS, seeds(1, 2, 3)),
        {**NIN_CAFFE, "dataset.name": "cifar100", "dataset.augment": False},
    ),
    "lrelu_slopes": Intent(
        (axis("activation.slope", 1.0, 0.5, 0.25, 0.1), seeds(1, 2, 3)),
        {**NIN_CAFFE, "activation.name": "lrelu", "dataset.name": "cifar10"},
    ),
    "plain30_init": Intent(
        (
            (RELU, PRELU, ELU, MPELU_PLAIN),
            axis("init.name", *HE_MODES, "taylor", "lsuv"),
            seeds(1),
        ),
        {**PLAIN_CAFFE, "model.depth": 30, "dataset.name": "cifar10"},
    ),
    "dead_relu_lr": Intent(
        (
            axis("activation.name", "relu", "lrelu", "prelu", "elu"),
            axis("optimizer.name", "sgd", "adagrad"),
            axis("optimizer.lr", 0.01, 0.1, 0.4),
            seeds(1, 2, 3),
        ),
        {
            "model.name": "plainnet",
            "model.depth": 8,
            "model.bn": False,
            "init.name": "he_fan_in",
            "optimizer.weight_decay": 5e-4,
            "schedule.name": "constant",
            "dataset.name": "cifar10",
            "trainer.divergence_factor": None,
            "trainer.diagnostics.every": 500,
        },
    ),
    "crelu_half_width": Intent(
        (axis("activation.name", "relu", "crelu"), seeds(1, 2, 3)),
        {"model.name": "nin", "model.equal_params": True, "dataset.name": "cifar10"},
    ),
    "nin_units": Intent(
        (
            (*XU_UNITS, PRELU, ELU, MPELU_NIN, MPELU_NIN_GAUSS),
            axis("model.final_activation", True, False),  # the unit on the class maps or not
            seeds(1, 2, 3),
        ),
        {**NIN_CAFFE, "dataset.name": "cifar10", "dataset.augment": True},
    ),
    "depth_saturation": Intent(
        (
            axis("activation.name", "sigmoid", "tanh", "relu", "elu", "identity"),
            axis("model.depth", 5, 10, 20, 30),
            seeds(1, 2),
        ),
        {
            **PLAIN_CAFFE,
            "init.name": "he_fan_in",
            "dataset.name": "cifar10",
            "trainer.diagnostics.every": 2000,  # per-layer sparsity and gradients
        },
    ),
}


def _cpu(study: str, **changed: Any) -> Intent:
    """``<study>_cpu``: the study's units and settings, one seed, on shapes; its solver (optimizer
    and init) as the study's but for ``changed`` (dotted keys with '__' for '.')."""
    full = INTENDED[study]
    axes = [a for a in full.axes if "seed" not in a[0]]
    solver = {k: v for k, v in full.fixed.items() if k.split(".")[0] in ("optimizer", "init")}
    solver |= {k.replace("__", "."): v for k, v in changed.items()}
    return Intent((*axes, seeds(1)), {**solver, "dataset.name": "shapes"})


#: NIN at 1/6 of the widths: Gaussian std x sqrt(6), lr 0.03 (0.1 stays at chance), 1,200 steps.
NIN_CPU = {"init__std": 0.12, "optimizer__lr": 0.03, "trainer__max_steps": 1200}
#: The plain-net solver's first 300 steps.
PLAIN_CPU = {"trainer__max_steps": 300, "model__widths": [16, 32, 64]}
INTENDED |= {
    "nin_cifar10_mpelu_cpu": _cpu("nin_cifar10_mpelu", **NIN_CPU),
    "nin_cifar10_rectifiers_cpu": _cpu("nin_cifar10_rectifiers", **NIN_CPU),
    "nin_cifar100_rectifiers_cpu": _cpu("nin_cifar100_rectifiers", **NIN_CPU),
    "lrelu_slopes_cpu": _cpu("lrelu_slopes", **NIN_CPU),
    "plain30_init_cpu": _cpu("plain30_init", model__depth=30, **PLAIN_CPU),
    "depth_saturation_cpu": _cpu(
        "depth_saturation",
        **{**PLAIN_CPU, "trainer__max_steps": 1400},
        trainer__diagnostics__every=350,
    ),
    "dead_relu_lr_cpu": Intent(
        (*INTENDED["dead_relu_lr"].axes[:-1], seeds(1, 2, 3)),
        {
            **INTENDED["dead_relu_lr"].fixed,
            "dataset.name": "fashion_mnist",
            "model.widths": [16, 32, 64],
            "trainer.max_steps": 400,
            "trainer.diagnostics.every": 200,
        },
    ),
    "depth_saturation_fmnist_cpu": Intent(
        (*INTENDED["depth_saturation"].axes[:-1], seeds(1, 2, 3)),
        {
            **INTENDED["depth_saturation"].fixed,
            "dataset.name": "fashion_mnist",
            "model.widths": [16, 32, 64],
            "trainer.max_steps": 1500,
            "trainer.diagnostics.every": 500,
        },
    ),
    "plain30_init_fmnist_cpu": Intent(
        (*INTENDED["plain30_init"].axes[:-1], seeds(1, 2)),
        {
            **INTENDED["plain30_init"].fixed,
            "dataset.name": "fashion_mnist",
            "model.widths": [16, 32, 64],
            "model.fc_widths": [64, 64],
            "trainer.max_steps": 1500,
        },
    ),
    "nin_units_fmnist_cpu": Intent(
        (*INTENDED["nin_units"].axes[:-1], seeds(1, 2, 3)),
        {
            **INTENDED["nin_units"].fixed,
            "dataset.name": "fashion_mnist",
            "dataset.crop_size": 24,  # 4 px under the image side, as 28 of CIFAR's 32
            "model.widths": [32, 32, 16, 32, 32, 32, 32, 32],
            "init.std": 0.12,
            "optimizer.lr": 0.03,
            "trainer.max_steps": 1500,
            "schedule.milestones": [1250],
        },
    ),
    "crelu_half_width_cpu": Intent(
        INTENDED["crelu_half_width"].axes,
        {
            **INTENDED["crelu_half_width"].fixed,
            "dataset.name": "fashion_mnist",
            "model.widths": [32, 32, 16, 32, 32, 32, 32, 32],
            "trainer.max_steps": 600,
        },
    ),
    "gru_linux_tlu_cpu": Intent(
        (*INTENDED["gru_linux_tlu"].axes[:-1], seeds(1, 2, 3)),
        {
            **INTENDED["gru_linux_tlu"].fixed,
            "trainer.max_steps": 20000,
            "trainer.max_time_s": 200,  # equal wall time, as the paper compares
        },
    ),
}


# ---------------------------------------------------------------------------------------------
# Composing presets and their sweeps in-process


@contextmanager
def _hydra_context(cfg: DictConfig) -> Iterator[None]:
    """${hydra:...} interpolations (run names built from choices) resolve as inside a job."""
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = None


@functools.cache
def _composed(*overrides: str) -> DictConfig:
    """Hydra's composition with the hydra node; cached, callers get a copy."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _compose(*overrides: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job config, hydra config) resolved, the job config as the trainer saves it, after the
    trainer's own validation (keys and values against the builders, before any data).

    Hydra builds the defaults tree from the group choices, then sets the other overrides'
    values; the same two steps here let jobs that differ only in values (seeds, depths,
    slopes) share one composition of their tree (composing is the slow part).
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = set(_composed(*overrides[:1]).hydra.runtime.choices)
    tree = tuple(o.input_line for o in parsed if o.get_key_element() in groups)
    values = [o for o in parsed if o.get_key_element() not in groups]
    cfg = copy.deepcopy(_composed(*tree))
    ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    with _hydra_context(cfg):
        hydra_cfg = OmegaConf.to_container(cfg.hydra, resolve=True)
        with open_dict(cfg):
            del cfg["hydra"]
        validate(cfg)
        config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict) and isinstance(hydra_cfg, dict)
    return config, hydra_cfg


def _sweep_overrides(params: dict[str, Any] | None) -> list[list[str]]:
    """One override list per job, as BasicSweeper builds them from hydra.sweeper.params."""
    parsed = OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in (params or {}).items()]
    )
    return BasicSweeper.split_arguments(parsed, None)[0]


@dataclass
class Job:
    overrides: list[str]
    config: dict[str, Any]


@functools.cache
def _jobs(preset: str) -> tuple[Job, ...]:
    _, hydra_cfg = _compose(f"experiment={preset}")
    return tuple(
        Job(job, _compose(f"experiment={preset}", *job)[0])
        for job in _sweep_overrides(hydra_cfg["sweeper"]["params"])
    )


def _get(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return "<absent>"
        node = node[part]
    return node


def _matches(facts: dict[str, Any], config: dict[str, Any]) -> bool:
    return all(_get(config, k) == v for k, v in facts.items())


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("name", PRESETS + PARTS)
def test_every_experiment_file_composes_and_validates(name):
    config, _ = _compose(f"experiment={name}")  # validated as the trainer does
    from_config(config["report"])  # claims parse, published files exist


@pytest.mark.parametrize("preset", PRESETS)
def test_sweep_jobs_validate_and_get_their_own_run_directory(preset):
    jobs = _jobs(preset)
    for job in jobs:  # each composed and validated by _jobs
        assert RUN_NAME.match(job.config["run_name"]), job.config["run_name"]
        # its own results/<experiment> directory: a variant never resumes its study's runs
        assert job.config["experiment_name"] == preset
    names = [job.config["run_name"] for job in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"{preset}: jobs share run directories {duplicates}"


@pytest.mark.parametrize("preset", PRESETS)
def test_sweep_is_the_intended_product(preset):
    if preset not in INTENDED:
        pytest.fail(f"write the sweep {preset} is meant to run into INTENDED in {__file__}")
    intended = INTENDED[preset].jobs()
    jobs = _jobs(preset)
    for facts in intended:
        found = [job.overrides for job in jobs if _matches(facts, job.config)]
        assert len(found) == 1, f"{preset}: {len(found)} jobs have {facts}: {found}"
    assert len(jobs) == len(intended), f"{preset}: {len(jobs)} jobs, {len(intended)} intended"


@pytest.mark.parametrize("preset", PRESETS)
def test_claims_and_published_values_name_groups_of_the_sweep(preset, tmp_path: Path):
    """The report groups runs by the keys that differ; every claim must name groups that this
    sweep makes (an order claim exactly one each), and every paper a study cites must have a
    value for one of its groups, as the report will match them."""
    runs = []
    for i, job in enumerate(_jobs(preset)):
        path = tmp_path / str(i)
        (path / ".hydra").mkdir(parents=True)
        (path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(job.config))
        (path / "summary.json").write_text(json.dumps({"status": "running"}))
        runs.append(load_run(path))
    groups, _ = group_runs(runs)
    report = from_config(_jobs(preset)[0].config["report"])
    for claim in parse_claims(report.claims):
        for ref in claim.order:
            assert len(select(ref, groups)) == 1, (claim.text, ref, [g.label for g in groups])
        for ref in claim.diverges + claim.converges + claim.fails:
            assert select(ref, groups), (claim.text, ref, [g.label for g in groups])
    metric = "bpc" if runs[0].config["dataset.name"] == "linux" else "error"
    if runs[0].config["dataset.name"] != "shapes":  # CPU variants: no paper ran on shapes
        for name in report.published:
            values = published.load(name)
            assert any(v.applies_to(g, metric) for v in values for g in groups), name


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.endswith("_cpu")])
def test_cpu_variant_is_its_study_on_small_data(preset):
    """``<study>_cpu`` (or ``<study>_fmnist_cpu``) includes ``<study>`` and sweeps the same units
    and settings."""
    study = preset.removesuffix("_cpu").removesuffix("_fmnist")
    defaults = yaml.safe_load((EXPERIMENTS / f"{preset}.yaml").read_text())["defaults"]
    assert study in defaults, f"{preset} must include its study ({study}) in its defaults"

    def variables(p: str) -> set[tuple[str, ...]]:
        return {tuple(o for o in job.overrides if not o.startswith("seed=")) for job in _jobs(p)}

    assert variables(preset) == variables(study)
    # the embedded images, or Debian's packages (Fashion-MNIST, the kernel corpus) for real data
    datasets = {job.config["dataset"]["name"] for job in _jobs(preset)}
    assert datasets <= {"shapes", "fashion_mnist", "linux"}


#: the studies on CIFAR, each of which needs a variant that runs on 2 CPU cores
CIFAR_STUDIES = [
    p for p, i in INTENDED.items() if str(i.fixed.get("dataset.name")).startswith("cifar")
]


@pytest.mark.parametrize("study", CIFAR_STUDIES)
def test_every_cifar_study_has_a_cpu_variant(study):
    assert f"{study}_cpu" in PRESETS or f"{study}_fmnist_cpu" in PRESETS


# ---------------------------------------------------------------------------------------------
# The authors' solver multipliers and fillers, read from each composed job (experiments.optim)


def _unit_jobs(preset: str) -> list[dict[str, Any]]:
    """One composed config per distinct job but for the seed."""
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for job in _jobs(preset):
        seen.setdefault(tuple(o for o in job.overrides if not o.startswith("seed=")), job.config)
    return list(seen.values())


def _built(config: dict[str, Any], num_outputs: int) -> tuple[Any, Any]:
    """(model, optimizer) of a composed job, without its data."""
    import activations
    from experiments.models import build_model
    from experiments.optim import build_optimizer

    unit = dict(config["activation"])
    act = functools.partial(activations.build, unit.pop("name"), **unit)
    arch = dict(config["model"])
    model = build_model(arch.pop("name"), act, num_outputs=num_outputs, in_channels=3, **arch)
    return model, build_optimizer(model, config["optimizer"])


def _lr_wd(optimizer: Any, param: Any) -> tuple[float, float]:
    (group,) = [g for g in optimizer.param_groups if any(p is param for p in g["params"])]
    return group["base_lr"], group["weight_decay"]


NIN_PRESETS = [p for p in PRESETS if p.startswith(("nin_cifar10_", "nin_cifar100_", "nin_units"))]


@pytest.mark.parametrize("preset", NIN_PRESETS)
def test_nin_presets_have_the_prototxt_multipliers(preset):
    """nin_*_gauss.prototxt: every conv weight lr_mult 1 decay_mult 1, bias lr_mult 2 decay_mult
    0 (:40-47), cccp6 weight and bias lr_mult 0.1 (:339-346)."""
    for config in _unit_jobs(preset):
        lr, wd = config["optimizer"]["lr"], config["optimizer"]["weight_decay"]
        model, optimizer = _built(config, 100 if "cifar100" in preset else 10)
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == 9
        for conv in convs[:-1]:
            assert _lr_wd(optimizer, conv.weight) == pytest.approx((lr, wd))
            assert _lr_wd(optimizer, conv.bias) == pytest.approx((2 * lr, 0.0))
        cccp6 = convs[-1]
        assert _lr_wd(optimizer, cccp6.weight) == pytest.approx((0.1 * lr, wd))
        assert _lr_wd(optimizer, cccp6.bias) == pytest.approx((0.1 * lr, 0.0))


PLAIN_PRESETS = [p for p in PRESETS if p.startswith(("plain30_init", "depth_saturation"))]


@pytest.mark.parametrize("preset", PLAIN_PRESETS)
def test_plain_net_presets_give_every_bias_lr_x2_and_no_decay(preset):
    """layer30_*_withoutBN.prototxt: every conv and FC bias lr_mult 2, decay_mult 0 (:72-73)."""
    for config in _unit_jobs(preset):
        lr, wd = config["optimizer"]["lr"], config["optimizer"]["weight_decay"]
        model, optimizer = _built(config, 10)
        for layer, _ in model.weight_layers():
            assert _lr_wd(optimizer, layer.bias) == pytest.approx((2 * lr, 0.0))
            assert _lr_wd(optimizer, layer.weight) == pytest.approx((lr, wd))


@pytest.mark.parametrize("preset", ["plain30_init", "plain30_init_cpu"])
def test_plain30_classifier_init_does_not_follow_the_variance_mode(preset):
    """The prototxts' fc3 is Gaussian 0.001 (ReLU file, :1077) or 0.01 (PReLU/ELU/MPELU files)
    whatever the convs' variance mode: the same std under he_fan_in, he_fan_out, he_average."""
    from experiments.inits import initialize

    expected = {"relu": 0.001, "prelu": 0.01, "elu": 0.01, "mpelu": 0.01}
    for config in _unit_jobs(preset):
        if config["init"]["name"] not in HE_MODES:
            continue
        torch.manual_seed(0)
        model, _ = _built(config, 10)
        initialize(model, config["init"]["name"])
        classifier = model.weight_layers()[-1][0]
        assert isinstance(classifier, torch.nn.Linear)
        std = expected[config["activation"]["name"]]
        assert classifier.weight.std().item() == pytest.approx(std, rel=0.1)


def test_plain30_fmnist_fcs_pass_what_the_prototxts_fcs_pass():
    """On 64-wide FCs the prototxts' stds are scaled so each FC's gain, sqrt(fan_in) x std, is
    Caffe's: fc1 fed by SPP (256 x 85 = 21,760 features), fc2 and fc3 by 4,096."""
    caffe_fan_in = (256 * 85, 4096, 4096)
    prototxt = {c["activation"]["name"]: c["model"]["fc_std"] for c in _unit_jobs("plain30_init")}
    for config in _unit_jobs("plain30_init_fmnist_cpu"):
        if config["init"]["name"] not in HE_MODES:
            continue
        model, _ = _built(config, 10)
        fcs = [layer for layer, _ in model.weight_layers() if isinstance(layer, torch.nn.Linear)]
        ours, caffe = config["model"]["fc_std"], prototxt[config["activation"]["name"]]
        for fc, std, caffe_std, fan_in in zip(fcs, ours, caffe, caffe_fan_in, strict=True):
            gain = fc.in_features**0.5 * std
            assert gain == pytest.approx(fan_in**0.5 * caffe_std, rel=2e-3)


def test_a_models_tuning_applies_to_its_optimizer_only_and_yields_to_an_explicit_lr():
    """configs/tuning/plainnet_adam.yaml: PlainNet under Adam starts at 2e-4, nothing else moves."""
    lr = {
        overrides: _compose(*overrides)[0]["optimizer"]["lr"]
        for overrides in (
            ("model=plainnet",),
            ("model=plainnet", "optimizer.lr=0.003"),
            ("model=plainnet", "optimizer=sgd"),
            ("model=nin",),
        )
    }
    sgd = yaml.safe_load((CONFIG_DIR / "optimizer" / "sgd.yaml").read_text())["lr"]
    assert list(lr.values()) == [2e-4, 0.003, sgd, 1e-3]

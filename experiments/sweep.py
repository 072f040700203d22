"""What actlab's sweeper (hydra_plugins/actlab) adds to Hydra's basic one: one run directory per
job, and a dry run.

Every job of a sweep is composed before the first one starts. Jobs whose run directories would
coincide (a swept key that ``run_name`` does not contain, such as ``-m optimizer.lr=0.1,0.01``)
get the swept keys that tell them apart appended to their run name, in Hydra's
``override_dirname`` form (``relu-nin-shapes-s0-optimizer.lr=0.1``), so no job is refused
halfway through a sweep because an earlier one took its directory. Jobs that no key tells apart
(``seed=1,1``) are the same run twice: the sweep is refused in one line before anything runs.

``hydra.sweeper.dry_run=true`` lists the jobs (run directory, state, steps, an estimate of the
training time) and trains nothing. The speed is the trainer's own: seconds per step from the
run's summary.json when it has run before, else a few training steps timed in this process on
the job's config (model, data and unit built as the run would build them; no file written).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from experiments.rundir import RunDir

log = logging.getLogger("actlab")

#: timed steps per distinct unit/model/data when a dry run measures speed (after one warm step)
TIMED_STEPS = 3


class SweepError(HydraException):
    """A sweep that cannot run as given; one line naming what to change."""


def run_dir(cfg: DictConfig) -> Path:
    """Where a job's run lives: hydra.sweep.dir / hydra.sweep.subdir, as Hydra will make it."""
    return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def name_apart(
    jobs: list[list[str]], dirs: Sequence[Path], run_names: Sequence[str]
) -> list[list[str]]:
    """Append ``run_name=<name>-<key=value,...>`` to the jobs when their directories collide.

    The keys are those whose values differ between jobs sharing a directory; every job gets
    them (not only the colliding ones), so the names of one sweep stay alike.
    """
    shared: dict[Path, list[int]] = {}
    for index, path in enumerate(dirs):
        shared.setdefault(path, []).append(index)
    clashes = [group for group in shared.values() if len(group) > 1]
    if not clashes:
        return jobs
    values = [dict(_split(o) for o in job) for job in jobs]
    order = list(dict.fromkeys(k for v in values for k in v))
    keys: list[str] = []
    for group in clashes:
        differ = [k for k in order if len({values[i].get(k) for i in group}) > 1]
        if not differ:
            first, second = group[:2]
            raise SweepError(
                f"jobs {first} and {second} of this sweep are the same run ({dirs[first]}): "
                "remove the value repeated in a swept key's list"
            )
        keys += [k for k in differ if k not in keys]
    keys = [k for k in order if k in keys]
    named = []
    for job, job_values, name in zip(jobs, values, run_names, strict=True):
        suffix = ",".join(f"{k}={job_values.get(k, '')}" for k in keys).replace("/", ".")
        quoted = f"{name}-{suffix}".replace("\\", "\\\\").replace("'", "\\'")
        named.append([*job, f"run_name='{quoted}'"])
    log.info("sweep: run names extended with %s (the swept keys run_name lacks)", ", ".join(keys))
    return named


def refused_jobs(refused: Sequence[Any], launched: int) -> Exception:
    """One error for the jobs a sweep refused (bad value, missing data): the first job's own
    error when it is the only one, else one line naming each."""
    from experiments.config import describe_error

    errors = [r._return_value for r in refused]
    if len(errors) == 1:
        return errors[0]
    names = [
        Path(str(OmegaConf.select(r.hydra_cfg, "hydra.runtime.output_dir"))).name for r in refused
    ]
    listed = "; ".join(f"[{n}] {describe_error(e)}" for n, e in zip(names, errors, strict=True))
    return SweepError(f"{len(errors)} of {launched} jobs were refused: {listed}")


# ---------------------------------------------------------------------------------------------
# Dry run


def print_plan(configs: Sequence[DictConfig], master: DictConfig | None) -> None:
    """The dry run's table: one line per job, then the count and the total estimate."""
    from experiments.cores import parallel_jobs

    parallel = parallel_jobs(master.hydra.launcher.get("n_jobs")) if master is not None else 1
    speeds: dict[str, float | str] = {}
    rows = []
    total = 0.0
    unknown = 0
    for index, cfg in enumerate(configs):
        path = run_dir(cfg)
        state, done, per_step = _state_of(path)
        finished = state in ("completed", "diverged")
        steps = _planned_steps(cfg)
        if steps is None:  # only trainer.max_time_s bounds it: the estimate is what time is left
            seconds = 0.0 if finished else max(0.0, cfg.trainer.max_time_s - done * (per_step or 0))
            total += seconds
            estimate = f"{_duration(seconds)} (max_time_s)"
            rows.append((index, str(path), state, f"{done}/-", estimate))
            continue
        if per_step is None:
            key = _speed_key(cfg)
            if key not in speeds:
                speeds[key] = measure_step_seconds(cfg, parallel)
            per_step = speeds[key]
        todo = max(0, steps - done) if not finished else 0
        if isinstance(per_step, str):
            estimate = f"? ({per_step})"
            unknown += todo > 0
        else:
            seconds = todo * per_step
            if cfg.trainer.max_time_s is not None:
                seconds = min(seconds, max(0.0, cfg.trainer.max_time_s - done * per_step))
            total += seconds
            estimate = f"{_duration(seconds)} ({per_step:.3g} s/step)"
        rows.append((index, str(path), state, f"{todo}/{steps}", estimate))
    width = max(len(r[1]) for r in rows)
    print(f"dry run: {len(rows)} job(s), {parallel} at a time; nothing is trained")
    print(f"{'#':>3}  {'run directory':<{width}}  {'state':<11} {'steps to run':>12}  estimate")
    for index, path, state, steps_text, estimate in rows:
        print(f"{index:>3}  {path:<{width}}  {state:<11} {steps_text:>12}  {estimate}")
    wall = total / min(parallel, max(1, len(rows)))
    note = f"; {unknown} job(s) without an estimate" if unknown else ""
    print(
        f"total: {len(rows)} job(s), {_duration(total)} of training, about {_duration(wall)} "
        f"at {parallel} at a time (evaluation and start-up not included{note})"
    )


def _state_of(path: Path) -> tuple[str, int, float | None]:
    """(status, steps done, seconds per step measured by that run) of an existing directory."""
    summary = RunDir(path).summary
    if not summary.exists():
        return ("new", 0, None)
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
        step = int(data.get("step") or 0)
        per_step = data["train_time_s"] / step if step else None
        return (str(data.get("status")), step, per_step)
    except (ValueError, KeyError, TypeError):
        return ("unreadable", 0, None)


def _planned_steps(cfg: DictConfig) -> int | None:
    """The step budget without building the data when max_steps alone sets it; None when only
    trainer.max_time_s bounds the run."""
    trainer = cfg.trainer
    if trainer.max_epochs is None:
        return None if trainer.max_steps is None else int(trainer.max_steps)
    from experiments.components import build

    return build(cfg).total_steps


def _speed_key(cfg: DictConfig) -> str:
    """What sets a step's cost: unit, net, data and the trainer's speed options."""
    node = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(node, dict)
    trainer = node["trainer"]
    speed = {k: trainer[k] for k in ("device", "precision", "threads", "channels_last", "compile")}
    picked = {g: node[g] for g in ("activation", "model", "dataset")}
    return json.dumps({**picked, "trainer": speed}, sort_keys=True, default=str)


def measure_step_seconds(cfg: DictConfig, parallel: int = 1) -> float | str:
    """Seconds per training step of ``cfg``, timed on the trainer's own step (no file written);
    a string saying why when the run cannot be built here (data not downloaded, ...)."""
    import tempfile

    import torch

    from experiments.components import build
    from experiments.config import describe_error, validate
    from experiments.cores import threads_for
    from experiments.trainer import Trainer

    threads = torch.get_num_threads()
    try:
        validate(cfg)
        torch.set_num_threads(cfg.trainer.threads or threads_for(parallel))
        parts = build(cfg)
        with tempfile.TemporaryDirectory() as scratch:
            trainer = Trainer(parts, cfg, RunDir(scratch))
            parts.model.train()
            trainer.train_step(0)
            start = time.perf_counter()
            for step in range(1, TIMED_STEPS + 1):
                loss, _ = trainer.train_step(step)
            float(loss)  # wait for the device
            return (time.perf_counter() - start) / TIMED_STEPS
    except Exception as err:
        return describe_error(err)
    finally:
        torch.set_num_threads(threads)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"

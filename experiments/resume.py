"""What a resume relies on, checked before any file of the run directory changes.

Resuming rewrites files: the CSVs are cut back to the checkpoint's step, summary.json and the
saved config are rewritten, and a run with nothing to resume from is cleared. Each of those is
only right if the directory holds what it claims, so everything is read and checked first, and
a resume either continues exactly or refuses in one line naming the file at fault and the way
out, leaving every file as it was:

- summary.json is valid (RunDir.read_summary); without it, a checkpoint or logged rows are an
  earlier run's results, never silently cleared;
- the run's config (``.hydra/config.yaml``, and the copy every checkpoint keeps) matches this
  one, except keys that do not change what is computed (``RESUME_MAY_CHANGE``);
- the checkpoint holds every part of the state, at a step inside this run's budget, and loads
  into this model, optimizer and task (shapes included);
- metrics.csv and eval.csv hold every row the run logged up to the checkpoint's step.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from experiments import checkpoint
from experiments.config import ConfigError
from experiments.rundir import EVAL, EVAL_COLUMNS, METRICS, SPLIT, RunDir
from experiments.yamldata import YamlDataError, parse_yaml_data, read_yaml_data

#: config keys (and subtrees) that may differ when resuming: they do not change what is computed.
#: A larger budget (max_steps, max_epochs, max_time_s) continues a run (train._extends).
RESUME_MAY_CHANGE = (
    "trainer.resume",
    "trainer.diagnostics",
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.max_time_s",
    "logger",
    "paths",
    "report",
)
#: what every checkpoint the trainer writes holds (see Trainer._save).
STATE_KEYS = (
    "step",
    "model",
    "optimizer",
    "task",
    "rng",
    "train_time_s",
    "wall_time_s",
    "first_loss",
    "window",
)
START_OVER = "pass trainer.resume=false to start the run over"


class ResumeRefused(ConfigError):
    """The run directory cannot be resumed exactly; one line naming the file and the way out
    (a ConfigError: this config cannot run in that directory as it is)."""


def previous_summary(rundir: RunDir, cfg: DictConfig) -> dict[str, Any] | None:
    """The summary of the run ``rundir`` holds, once it is known to be this config's run;
    None when there is no earlier run (files it would clear hold nothing of value)."""
    summary = rundir.read_summary()
    if summary is None:
        _refuse_results_without_summary(rundir)
        return None
    if rundir.config.exists():
        try:
            saved = read_yaml_data(rundir.config)
        except YamlDataError as err:
            raise ResumeRefused(f"{err}; restore it, or {START_OVER}") from None
        check_same_config(saved, cfg, rundir.config)
    elif rundir.checkpoint.exists():
        state = checkpoint.load(rundir.checkpoint, torch.device("cpu"))
        check_same_config(_config_copy(state, rundir.checkpoint), cfg, rundir.checkpoint)
    else:
        raise ResumeRefused(
            f"{rundir.config} is missing, so the config of the run in {rundir.path} cannot be "
            f"checked; restore it, or {START_OVER}"
        )
    return summary


def _refuse_results_without_summary(rundir: RunDir) -> None:
    """A checkpoint or logged rows without summary.json: an earlier run's results."""
    if rundir.checkpoint.exists():
        found = f"{rundir.checkpoint} exists"
    else:
        logged = [p for p in (rundir.metrics, rundir.eval) if len(_lines(p)) > 1]
        if not logged:
            return
        found = f"{logged[0]} holds rows"
    raise ResumeRefused(
        f"{rundir.summary} is missing but {found}: an earlier run's results; restore "
        f"summary.json, or {START_OVER}"
    )


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def may_change(key: str) -> bool:
    """Whether ``key`` may differ between a run and its resume.

    The one place that decides it: a policy that depends on the run (e.g. a larger
    trainer.max_steps extending a completed run) belongs here.
    """
    return any(key == k or key.startswith(f"{k}.") for k in RESUME_MAY_CHANGE)


def check_same_config(saved: Any, cfg: DictConfig, source: Path) -> None:
    """Refuse to resume (or skip) a run whose config ``saved`` (read from ``source``) differs."""
    if not isinstance(saved, dict):
        raise ResumeRefused(f"{source} holds no config mapping; restore it, or {START_OVER}")
    before = _flat(saved)
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    differ = [
        key
        for key in sorted(set(before) | set(now))
        if not may_change(key)
        and before.get(key, "<unset>") != now.get(key, "<unset>")
        and not (key not in before and now[key] is None)  # an option added since, left off
    ]
    if differ:
        key = _telling(differ, before, now)
        others = f" (and {len(differ) - 1} more key(s))" if len(differ) > 1 else ""
        raise ResumeRefused(
            f"{source} holds a run with {key}={before.get(key, '<unset>')!r}, not "
            f"{now.get(key, '<unset>')!r}{others}; give this run another run_name, or pass "
            "trainer.resume=false to set that run aside and start over"
        )


def _telling(keys: list[str], saved: dict[str, Any], now: dict[str, Any]) -> str:
    """The key to name first: a group choice (``init.name``) over a key that only one of the
    two configs has (``init.mode`` exists for taylor, not for he_fan_in)."""
    both = [k for k in keys if k in saved and k in now]
    return next((k for k in both if k.endswith(".name")), (both or keys)[0])


def _config_copy(state: dict[str, Any], path: Path) -> Any:
    """The config a checkpoint was written under (Trainer._save keeps a copy)."""
    text = state.get("config")
    if not isinstance(text, str):
        raise ResumeRefused(
            f"checkpoint {path} keeps no copy of its config and the run's .hydra/config.yaml is "
            f"missing, so its config cannot be checked; restore that file, or {START_OVER}"
        )
    try:
        return parse_yaml_data(text, f"the config inside checkpoint {path}")
    except YamlDataError as err:
        raise ResumeRefused(f"{err}; {START_OVER}") from None


def check_state(state: dict[str, Any], parts: Any, cfg: DictConfig, rundir: RunDir) -> None:
    """Refuse a checkpoint this run cannot continue from exactly; on success the model,
    optimizer, task and random generators hold its state (nothing on disk has changed)."""
    path = rundir.checkpoint
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ResumeRefused(f"checkpoint {path} lacks {', '.join(missing)}; {START_OVER}")
    if "config" in state:
        check_same_config(_config_copy(state, path), cfg, path)
    step, total = state["step"], parts.total_steps
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= total:
        raise ResumeRefused(
            f"checkpoint {path} is at step {step!r}, outside this run's budget of 1..{total} "
            f"steps; {START_OVER}"
        )
    for name in ("train_time_s", "wall_time_s"):
        if not _is_number(state[name]):
            raise ResumeRefused(f"checkpoint {path} has {name}={state[name]!r}; {START_OVER}")
    try:
        parts.model.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.task.load_state_dict(state["task"])
        checkpoint.set_rng_state(state["rng"])
    except Exception as err:  # torch reports a misfit as RuntimeError, ValueError, KeyError, ...
        raise ResumeRefused(
            f"checkpoint {path} does not fit this run ({type(err).__name__}: {_first_detail(err)});"
            f" was it written by a differently configured run? {START_OVER}"
        ) from None
    check_logs(rundir, step, cfg.trainer, total)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _first_detail(err: BaseException) -> str:
    """torch's "Error(s) in loading state_dict ...:" header is generic: its next line says what."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return lines[1][:200]
    return (lines[0] if lines else "")[:200]


def expected_steps(trainer: DictConfig, step: int, total: int) -> dict[str, set[int]]:
    """The steps that must have rows in metrics.csv and (val rows) eval.csv when a
    checkpoint is at ``step`` of ``total``: what Trainer.fit logs on its way there."""
    logged = set(range(trainer.log_every, step + 1, trainer.log_every))
    every = trainer.eval_every
    evaluated = {s for s in range(every, step + 1, every) if s < total} if every else set()
    if step == total:  # the last window's row and the final validation come before the save
        logged.add(total)
        evaluated.add(total)
    return {METRICS: logged, EVAL: evaluated}


def check_logs(rundir: RunDir, step: int, trainer: DictConfig, total: int) -> None:
    """Every row logged up to ``step`` is present and readable: a resume cuts the CSVs back
    to ``step`` and continues after it, so a lost row would stay lost (and ``best`` change)."""
    expected = expected_steps(trainer, step, total)
    for path in (rundir.metrics, rundir.eval):
        found = _logged_steps(path, step)
        lost = sorted(expected[path.name] - found)
        if lost:
            have = f"rows end at step {max(found)}" if found else "no rows"
            raise ResumeRefused(
                f"{path} has no row for step {lost[0]} ({have}) though checkpoint "
                f"{rundir.checkpoint} is at step {step}: rows were lost; restore the file, or "
                f"{START_OVER}"
            )


def _lines(path: Path) -> list[str]:
    """The whole lines of a CSV (a torn last line, left by a killed writer, is not one)."""
    if not path.is_file():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ResumeRefused(f"{path} is not UTF-8 text (byte {err.start}); {START_OVER}") from None
    return text[: text.rfind("\n") + 1].splitlines()


def _logged_steps(path: Path, up_to: int) -> set[int]:
    """Steps <= ``up_to`` with a row in ``path`` (val rows only for eval.csv); a row that is
    not numbers where numbers belong is refused, naming its line."""
    lines = _lines(path)
    if not lines:
        return set()
    rows = csv.reader(lines)
    header = next(rows)
    text_columns = {i for i, name in enumerate(header) if name == SPLIT}
    split = EVAL_COLUMNS.index(SPLIT) if text_columns else None
    steps = set()
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header) or not _numbers(row, text_columns):
            raise ResumeRefused(
                f"line {number} of {path} is not a row of numbers like its header "
                f"({','.join(row)[:80]!r}); restore the file, or {START_OVER}"
            )
        row_step = int(float(row[0]))
        if row_step <= up_to and (split is None or row[split] == "val"):
            steps.add(row_step)
    return steps


def _numbers(row: list[str], text_columns: set[int]) -> bool:
    """Whether the cells outside ``text_columns`` are numbers (or empty, for a None), with
    an integer step first."""
    if not row or not row[0].isdigit():
        return False
    for i, cell in enumerate(row):
        if i in text_columns or cell == "":
            continue
        try:
            float(cell)
        except ValueError:
            return False
    return True

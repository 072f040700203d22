"""Reading run directories (experiments.rundir, docs/architecture.md) into tables, trusting only
their files.

The report never imports the trainer: a run is whatever a directory holding ``summary.json``
says it is, so reports work on runs copied from a cluster, killed half-way or made by an
older version of the code. Every file is untrusted input (it may come from anywhere): configs
are read as plain, bounded YAML data with nothing resolved, numbers must be numbers, and each
run is parsed on its own, so a malformed one is skipped with one line naming the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.rundir import (
    DIAGNOSTICS_COLUMNS,
    EVAL_COLUMNS,
    LAYER,
    MEASURE,
    METRICS_REQUIRED,
    REPLACED,
    SPLIT,
    STATUSES,
    STEP,
    SUMMARY,
    RunDir,
)
from experiments.yamldata import YamlDataError, read_yaml_data

log = logging.getLogger(__name__)

#: the evaluation metrics a task may write to eval.csv (lower is better for both).
EVAL_METRICS = ("error", "bpc")


class ReportError(ValueError):
    """A problem with the inputs that deserves one clear line, not a traceback."""


@dataclass(eq=False)
class Run:
    """One run directory: its resolved config (flattened), summary and logged curves."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: pd.DataFrame
    evals: pd.DataFrame
    diagnostics: pd.DataFrame | None = None
    #: the unresolved values of interpolated keys, to spot keys derived from the seed.
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.config.get("run_name") or self.path.name)

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "running"))

    @property
    def metric(self) -> str | None:
        """The task's evaluation metric column in eval.csv ('error' or 'bpc'), if any."""
        return next((m for m in EVAL_METRICS if m in self.evals.columns), None)


def flatten_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config as dotted keys, read as plain YAML data (experiments.yamldata).

    Nothing in it is resolved: a received run directory is untrusted, and resolving
    ``${oc.env:...}`` would copy this machine's environment into the report. Our trainer saves
    the config resolved, so this only leaves the interpolations of a config Hydra saved itself
    as their text. Returns (values, raw) where raw holds every value that is an
    interpolation's text (groups.py reads it to spot keys derived from the seed).
    """
    try:
        data = read_yaml_data(path)
    except YamlDataError as err:
        raise ReportError(str(err)) from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a mapping at the top level")
    flat = pd.json_normalize(data, sep=".").iloc[0].to_dict() if data else {}
    raw = {k: v for k, v in flat.items() if isinstance(v, str) and "${" in v}
    return flat, raw


#: columns holding text; every other contract column must hold numbers.
_TEXT_COLUMNS = (SPLIT, LAYER, MEASURE)


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A contract CSV, or an empty frame with its columns when absent or still empty."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(columns))
    try:
        frame = pd.read_csv(path, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReportError(f"{path}: not a readable CSV ({reason})") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in frame.columns:
        if column in _TEXT_COLUMNS or pd.api.types.is_numeric_dtype(frame[column]):
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][numbers.isna() & frame[column].notna()]
        if len(bad):
            raise ReportError(
                f"{path}: line {int(bad.index[0]) + 2}: {column}={bad.iloc[0]!r} is not a number"
            )
        frame[column] = numbers
    return frame.sort_values(STEP, kind="stable").reset_index(drop=True)


def _read_summary(path: Path) -> dict[str, Any]:
    """summary.json as a dict whose fields the report reads have their types."""
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ReportError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(summary, dict):
        raise ReportError(f"{path}: expected a JSON object")
    status = summary.get("status", "running")
    if status not in STATUSES:
        raise ReportError(f"{path}: status {status!r}; valid: {', '.join(STATUSES)}")
    if not isinstance(summary.get("data") or {}, dict):
        raise ReportError(f"{path}: data={summary['data']!r} is not a JSON object")
    return summary


def load_run(path: Path) -> Run:
    """Read one run directory; a malformed file raises ReportError naming it."""
    files = RunDir(path)
    summary = _read_summary(files.summary)
    if not files.config.is_file():
        raise ReportError(f"{path}: no {files.config.relative_to(path)}")
    config, raw = flatten_config(files.config)
    diag_path = files.diagnostics
    return Run(
        path=path,
        config=config,
        summary=summary,
        metrics=_read_csv(files.metrics, METRICS_REQUIRED),
        evals=_read_csv(files.eval, EVAL_COLUMNS),
        diagnostics=_read_csv(diag_path, DIAGNOSTICS_COLUMNS) if diag_path.is_file() else None,
        raw=raw,
    )


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[str]]:
    """Every run directory (one holding summary.json) under ``paths``, sorted by path.

    Unreadable runs are skipped with a warning (returned as the second item) so that one
    broken directory does not hide a whole sweep; no readable run at all is a ReportError.
    """
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.is_dir():
            raise ReportError(f"{root}: not a directory")
    found = sorted(
        {
            s.parent.resolve()
            for root in roots
            for s in root.rglob(SUMMARY)
            if REPLACED not in str(s.relative_to(root))  # runs set aside by resume=false
        },
    )
    runs: list[Run] = []
    skipped: list[str] = []
    for run_dir in found:
        try:
            runs.append(load_run(run_dir))
        except ReportError as err:
            log.warning("skipping run: %s", err)
            skipped.append(str(err))
        except Exception as err:  # each run is parsed in isolation: one can never stop a report
            first = (str(err).strip().splitlines() or [""])[0]
            reason = f"{run_dir}: {type(err).__name__}: {first}"
            log.warning("skipping run: %s", reason)
            skipped.append(reason)
    if not runs:
        where = ", ".join(str(r) for r in roots)
        detail = f" ({len(skipped)} unreadable: {skipped[0]})" if skipped else ""
        raise ReportError(f"no readable run directory (with summary.json) under {where}{detail}")
    metrics = {r.metric for r in runs if r.metric}
    if len(metrics) > 1:
        raise ReportError(f"runs mix evaluation metrics {sorted(metrics)}; report them apart")
    return runs, skipped

"""Reading run directories (the DESIGN.md contract) into tables, trusting only their files.

The report never imports the trainer: a run is whatever a directory holding ``summary.json``
says it is, so reports work on runs copied from a cluster, killed half-way or made by an
older version of the code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.rundir import REPLACED

log = logging.getLogger(__name__)

#: every status summary.json may carry; only ``completed`` runs enter means and claims.
STATUSES = ("completed", "diverged", "failed", "interrupted", "running")
#: the evaluation metrics a task may write to eval.csv (lower is better for both).
EVAL_METRICS = ("error", "bpc")

_METRICS_COLUMNS = ["step", "epoch", "time_s", "train_loss", "lr"]
_EVAL_COLUMNS = ["step", "epoch", "time_s", "split", "loss"]
_DIAG_COLUMNS = ["step", "layer", "metric", "value"]


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
    """The config as dotted keys, interpolations resolved where possible.

    Our trainer saves the config resolved; one saved by Hydra itself is not, and
    interpolations that need Hydra's runtime (``${hydra:...}``, ``${now:...}``) cannot be
    resolved afterwards, so they keep their text. Returns (resolved, raw) where raw holds
    the original text of every interpolated key.
    """
    cfg = OmegaConf.load(path)
    if not OmegaConf.is_dict(cfg):
        raise ReportError(f"{path}: expected a mapping at the top level")
    container = OmegaConf.to_container(cfg, resolve=False)
    flat = pd.json_normalize(container, sep=".").iloc[0].to_dict() if container else {}
    raw: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, str) and "${" in value:
            raw[key] = value
            try:
                resolved = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
            except OmegaConfBaseException:
                continue
            flat[key] = (
                OmegaConf.to_container(resolved, resolve=True)
                if OmegaConf.is_config(resolved)
                else resolved
            )
    return flat, raw


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """A contract CSV, or an empty frame with its columns when absent or still empty."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=columns)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not a readable CSV ({err})") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame.sort_values("step", kind="stable").reset_index(drop=True)


def load_run(path: Path) -> Run:
    """Read one run directory; a malformed file raises ReportError naming it."""
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{summary_path}: not readable JSON ({err})") from err
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_path}: expected a JSON object")
    status = summary.get("status", "running")
    if status not in STATUSES:
        raise ReportError(f"{summary_path}: status {status!r}; valid: {', '.join(STATUSES)}")
    config_path = path / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise ReportError(f"{path}: no .hydra/config.yaml")
    try:
        config, raw = flatten_config(config_path)
    except (OSError, OmegaConfBaseException) as err:
        raise ReportError(f"{config_path}: not readable YAML ({err})") from err
    diag_path = path / "diagnostics.csv"
    return Run(
        path=path,
        config=config,
        summary=summary,
        metrics=_read_csv(path / "metrics.csv", _METRICS_COLUMNS),
        evals=_read_csv(path / "eval.csv", _EVAL_COLUMNS),
        diagnostics=_read_csv(diag_path, _DIAG_COLUMNS) if diag_path.is_file() else None,
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
            for s in root.rglob("summary.json")
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
    if not runs:
        where = ", ".join(str(r) for r in roots)
        detail = f" ({len(skipped)} unreadable: {skipped[0]})" if skipped else ""
        raise ReportError(f"no readable run directory (with summary.json) under {where}{detail}")
    metrics = {r.metric for r in runs if r.metric}
    if len(metrics) > 1:
        raise ReportError(f"runs mix evaluation metrics {sorted(metrics)}; report them apart")
    return runs, skipped

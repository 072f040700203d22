"""The ``report:`` config key: what a study preset tells the report, read back from its runs.

Schema (top level of the composed config, so every run's ``.hydra/config.yaml`` has it)::

    report:
      published: xu2015_rrelu      # null, a name or a list of names of published/<name>.yaml
      claims: [...]                # orderings/outcomes to judge (experiments.report.claims)
      deviations: [...]            # strings: how this preset departs from the paper's setup

``report: false`` (command line ``report=false``) turns off the end-of-sweep report. Runs
of one study normally agree; when several study directories are reported together, the
claims, papers and deviations of all of them are merged (duplicates once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from experiments.report.runs import ReportError, Run

KEYS = ("published", "claims", "deviations")


@dataclass
class ReportSettings:
    published: list[str] = field(default_factory=list)
    claims: list[Any] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)


def _as_list(value: Any, key: str, run: Run) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise ReportError(f"{run.path}: report.{key} must be a list, got {value!r}")


def enabled(config_report: Any) -> bool:
    """False only for an explicit ``report: false``."""
    return config_report is not False


def report_settings(runs: list[Run]) -> ReportSettings:
    """The union of every run's ``report.*`` settings, validated key by key."""
    out = ReportSettings()
    seen: set[str] = set()
    for run in runs:
        for key in run.config:
            if key.startswith("report.") and key.split(".")[1] not in KEYS:
                raise ReportError(
                    f"{run.path}: unknown setting {key!r}; valid: "
                    + ", ".join(f"report.{k}" for k in KEYS)
                )
        for name in _as_list(run.config.get("report.published"), "published", run):
            if name not in out.published:
                out.published.append(str(name))
        for claim in _as_list(run.config.get("report.claims"), "claims", run):
            key = json.dumps(claim, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.claims.append(claim)
        for text in _as_list(run.config.get("report.deviations"), "deviations", run):
            if str(text) not in out.deviations:
                out.deviations.append(str(text))
    return out

"""The ``report:`` config key: what a study preset tells the report, read back from its runs.

Schema (top level of the composed config, so every run's ``.hydra/config.yaml`` has it)::

    report:
      published: xu2015_rrelu      # null, a name or a list of names of published/<name>.yaml
      claims: [...]                # orderings/outcomes to judge (experiments.report.claims)
      deviations: [...]            # strings: how this preset departs from the paper's setup

``report: null`` (the default) reports with no claims; ``report: false`` (command line
``report=false``) turns the end-of-sweep report off. Runs of one study normally agree; when
several study directories are reported together, the claims, papers and deviations of all
of them are merged (duplicates once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from experiments.report import published
from experiments.report.claims import parse_claims
from experiments.report.runs import ReportError, Run

KEYS = ("published", "claims", "deviations")


@dataclass
class ReportSettings:
    published: list[str] = field(default_factory=list)
    claims: list[Any] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)


def enabled(report: Any) -> bool:
    """False only for an explicit ``report: false``."""
    return report is not False


def _names(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise ReportError(f"report.{key} must be a list, got {value!r}")


def from_config(report: Any) -> ReportSettings:
    """Validated settings of one config's ``report`` value (a plain container).

    Checks everything a report will need (claim schema, published files, types), so a
    sweep can refuse a broken preset before it trains instead of after.
    """
    if report is None or report is False:
        return ReportSettings()
    if not isinstance(report, dict):
        raise ReportError(f"report must be a mapping, null or false, got {report!r}")
    unknown = sorted(set(report) - set(KEYS))
    if unknown:
        valid = ", ".join(f"report.{k}" for k in KEYS)
        raise ReportError(f"unknown setting 'report.{unknown[0]}'; valid: {valid}")
    settings = ReportSettings(
        published=[str(n) for n in _names(report.get("published"), "published")],
        claims=_names(report.get("claims"), "claims"),
        deviations=[str(d) for d in _names(report.get("deviations"), "deviations")],
    )
    parse_claims(settings.claims)
    published.load(settings.published)
    return settings


def _report_of(run: Run) -> Any:
    """The run's ``report`` value, rebuilt from its flattened config."""
    if "report" in run.config:
        return run.config["report"]
    return {k.split(".", 1)[1]: v for k, v in run.config.items() if k.startswith("report.")}


def report_settings(runs: list[Run]) -> ReportSettings:
    """The union of every run's ``report`` settings; a bad one names its run."""
    out = ReportSettings()
    seen: set[str] = set()
    for run in runs:
        try:
            mine = from_config(_report_of(run) or None)
        except ReportError as err:
            raise ReportError(f"{run.path}: {err}") from None
        out.published += [n for n in mine.published if n not in out.published]
        out.deviations += [d for d in mine.deviations if d not in out.deviations]
        for claim in mine.claims:
            key = json.dumps(claim, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.claims.append(claim)
    return out

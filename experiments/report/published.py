"""Published values, one YAML file per paper under ``experiments/report/published/``.

Schema of ``<name>.yaml`` (``defaults`` fills any key a value leaves out)::

    paper: "Xu et al. 2015, Empirical Evaluation of Rectified Activations ..."
    citation: "arXiv:1505.00853"
    defaults: {metric: test_error, unit: fraction, tag: MEM, source: "...", table: "..."}
    values:
      - label: relu                 # a group reference (experiments.report.groups.select)
        where: {dataset.name: cifar10, model.name: nin}   # config the group must share
        value: 0.1245
        metric: test_error          # test_error | val_error | test_bpc | val_bpc | converges
        unit: fraction              # fraction | percent (error metrics only)
        table: "Table 2 (CIFAR-10)" # where in the source
        source: "..."               # what was read
        tag: MEM                    # READ | SEC | MEM | DER (see docs/papers.md)
        note: "..."                 # optional

``where`` keeps a number from being compared with an unlike setup: a CIFAR-10 NIN value is
never put next to a run on the procedural ``shapes`` data. Only values with a real source
belong here; the tag says how sure we are and is shown next to every value.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.report.groups import Group, select, values_equal
from experiments.report.runs import ReportError

#: package data (pyproject.toml), so an installed wheel finds it too
PUBLISHED_DIR = Path(str(importlib.resources.files(__package__) / "published"))
TAGS = ("READ", "SEC", "MEM", "DER")
#: published metric -> (the RUN_STATS entry it is compared with, the eval.csv metric it needs).
METRICS: dict[str, tuple[str, str | None]] = {
    "test_error": ("final_test", "error"),
    "val_error": ("final_val", "error"),
    "test_bpc": ("final_test", "bpc"),
    "val_bpc": ("final_val", "bpc"),
    "converges": ("converged", None),
}
UNITS = {"fraction": 1.0, "percent": 0.01}
_REQUIRED = ("label", "metric", "value", "table", "source", "tag")
_OPTIONAL = ("where", "unit", "note")


@dataclass(frozen=True)
class Published:
    """One number (or converge / fail outcome) from a paper, in our units (fractions)."""

    #: the YAML file's stem, and the paper's title with its citation.
    paper: str
    citation: str
    label: str
    metric: str
    value: float | bool
    table: str
    source: str
    tag: str
    where: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def stat(self) -> str:
        return METRICS[self.metric][0]

    def applies_to(self, group: Group, eval_metric: str | None) -> bool:
        """Same label, same setup (``where``), and a metric this study measures."""
        needed = METRICS[self.metric][1]
        if needed is not None and needed != eval_metric:
            return False
        common = group.common()
        if not all(k in common and values_equal(common[k], v) for k, v in self.where.items()):
            return False
        return bool(select(self.label, [group]))


def available() -> list[str]:
    return sorted(p.stem for p in PUBLISHED_DIR.glob("*.yaml"))


def _value(entry: dict[str, Any], where: str) -> float | bool:
    value, metric = entry["value"], entry["metric"]
    if metric == "converges":
        if not isinstance(value, bool):
            raise ReportError(f"{where}: converges needs true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{where}: value {value!r} is not a number")
    unit = entry.get("unit", "fraction")
    if unit not in UNITS:
        raise ReportError(f"{where}: unit {unit!r}; valid: {', '.join(UNITS)}")
    return float(value) * (UNITS[unit] if metric.endswith("_error") else 1.0)


def parse(data: Any, name: str) -> list[Published]:
    """Validate one paper's YAML content; every problem names the file and the entry."""
    if not isinstance(data, dict) or not isinstance(data.get("values"), list):
        raise ReportError(f"published {name!r}: needs a 'values' list")
    unknown = sorted(set(data) - {"paper", "citation", "defaults", "values"})
    if unknown:
        raise ReportError(f"published {name!r}: unknown key {unknown[0]!r}")
    defaults = data.get("defaults") or {}
    out = []
    for i, item in enumerate(data["values"]):
        where = f"published {name!r} value {i}"
        entry = {**defaults, **(item or {})}
        bad = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
        if bad:
            valid = ", ".join(_REQUIRED + _OPTIONAL)
            raise ReportError(f"{where}: unknown key {bad[0]!r}; valid: {valid}")
        missing = [k for k in _REQUIRED if k not in entry]
        if missing:
            raise ReportError(f"{where}: missing {', '.join(missing)}")
        if entry["metric"] not in METRICS:
            raise ReportError(f"{where}: metric {entry['metric']!r}; valid: {', '.join(METRICS)}")
        if entry["tag"] not in TAGS:
            raise ReportError(f"{where}: tag {entry['tag']!r}; valid: {', '.join(TAGS)}")
        out.append(
            Published(
                paper=name,
                citation=f"{data.get('paper', name)}, {data.get('citation', '')}".strip(", "),
                label=str(entry["label"]),
                metric=entry["metric"],
                value=_value(entry, where),
                table=str(entry["table"]),
                source=str(entry["source"]),
                tag=entry["tag"],
                where=dict(entry.get("where") or {}),
                note=str(entry.get("note", "")),
            )
        )
    return out


def load(names: str | list[str] | None) -> list[Published]:
    """The values of the named papers (``report.published`` in a preset)."""
    if not names:
        return []
    out: list[Published] = []
    for name in [names] if isinstance(names, str) else list(names):
        path = PUBLISHED_DIR / f"{name}.yaml"
        if not path.is_file():
            choices = ", ".join(available())
            raise ReportError(f"unknown published values {name!r}; available: {choices}")
        out += parse(yaml.safe_load(path.read_text()), name)
    return out

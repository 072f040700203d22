"""``report/README.md``: one page saying what was run, what it showed, and how it compares."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.report import budget, formatting, significance
from experiments.report.claims import Verdict
from experiments.report.figures import Figure
from experiments.report.groups import Group, defining_keys, ignored
from experiments.report.published import TAGS, Published
from experiments.report.runs import Run
from experiments.report.stats import RUN_STATS
from experiments.report.tables import markdown

_TAG_MEANING = {
    "READ": "read in the primary source (paper, authors' code or README)",
    "SEC": "read in a third-party summary or re-implementation",
    "MEM": "from memory of the paper, not checked against it: treat as unverified",
    "DER": "computed from values read elsewhere",
}
#: summary.json keys saying where and with what the runs ran (the rest is per-run results).
PROVENANCE = (
    "device",
    "device_name",
    "threads",
    "precision",
    "versions",
    "git_commit",
    "git_dirty",
    "data",
    "stop_reason",
)


@dataclass
class Index:
    """Everything the page shows, gathered by the report builder."""

    sources: list[Path]
    runs: list[Run]
    groups: list[Group]
    keys: list[str]
    figures: list[Figure]
    results: pd.DataFrame
    results_caption: str
    comparisons: pd.DataFrame
    published: list[Published]
    verdicts: list[Verdict]
    deviations: list[str]
    per_run: pd.DataFrame
    skipped: list[str]
    #: the task's evaluation metric ('error' or 'bpc'), if any.
    metric: str | None = None
    #: which runs the report covers and why (a sweep's own jobs, or directories combined).
    scope: str = ""


def _display(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _distinct(values: list[Any]) -> str:
    """One value, or each distinct value with how many runs had it."""
    counts = Counter(_display(v) for v in values)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{v} ({n} run{'s' * (n > 1)})" for v, n in counts.most_common())


def _by_section(values: dict[str, str]) -> list[str]:
    """``- `section`: key=value, ...`` lines, one per top-level key."""
    sections: dict[str, list[str]] = {}
    for key, value in values.items():
        top, _, rest = key.partition(".")
        sections.setdefault(top, []).append(f"{rest}={value}" if rest else value)
    return [f"- `{top}`: {', '.join(items)}" for top, items in sections.items()]


def _sources(sources: list[Path]) -> str:
    """The directories read, or how many run directories under which folder."""
    if len(sources) <= 3:
        return ", ".join(map(str, sources))
    return f"{len(sources)} run directories under {os.path.commonpath(sources)}"


def _what_was_run(ix: Index) -> list[str]:
    statuses = Counter(r.status for r in ix.runs)
    seeds = sorted({r.config.get("seed") for r in ix.runs}, key=str)
    experiments = sorted({str(r.config.get("experiment_name", "?")) for r in ix.runs})
    defining = defining_keys(ix.runs, ix.keys)
    implied = [k for k in ix.keys if k not in defining]
    lines = [
        "## What was run",
        "",
        f"- Experiment(s): {', '.join(experiments)}; from {_sources(ix.sources)}",
        *([f"- Scope: {ix.scope}"] if ix.scope else []),
        f"- Runs: {len(ix.runs)} ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})"
        f" in {len(ix.groups)} group(s); seeds: {', '.join(map(str, seeds))}",
        *budget.time_lines(ix.runs),
        "- Groups differ in: "
        + (", ".join(f"`{k}`" for k in defining) or "nothing (one configuration)"),
    ]
    if implied:
        lines.append(
            "- Also differing, each fixed by the keys above: "
            + ", ".join(f"`{k}`" for k in implied)
        )
    lines.append("")
    table = pd.DataFrame(
        [
            {
                "group": g.label,
                **{k: _display(g.settings[k]) if k in g.settings else "–" for k in ix.keys},
                "seeds": ", ".join(map(str, g.seeds)),
            }
            for g in ix.groups
        ]
    )
    first = ix.runs[0]
    shared = {
        k: _display(v)
        for k, v in sorted(first.config.items())
        if k not in ix.keys and not ignored(k, first)
    }
    lines += [markdown(table), "Settings shared by every run (resolved config):", ""]
    lines += _by_section(shared)
    summaries = [pd.json_normalize(r.summary, sep=".").iloc[0].to_dict() for r in ix.runs]
    keys = sorted({k for s in summaries for k in s if k.split(".")[0] in PROVENANCE})
    provenance = {}
    for key in keys:
        values = [s.get(key) for s in summaries]
        # statistics fitted on each seed's split (standardisation means, ...) are not provenance
        if key.startswith("data.") and len({_display(v) for v in values}) > 1:
            continue
        provenance[key] = _distinct(values)
    lines += ["", "Where and with what they ran (summary.json):", "", *_by_section(provenance)]
    return [*lines, ""]


def _figures(ix: Index) -> list[str]:
    lines = ["## Figures", ""]
    for f in ix.figures:
        name = f.stem.name
        lines += [f"![{f.caption}]({name}.png)", "", f"*{f.caption}* ([PDF]({name}.pdf))", ""]
    return lines


def _results(ix: Index) -> list[str]:
    lines = ["## Results", "", ix.results_caption, "", markdown(ix.results)]
    lines += [
        "Also as `results.tex` (LaTeX) and `results.csv` (raw values: run counts by status and"
        " `<stat>_mean`, `_std`, `_n` for every statistic):",
        "",
        *(f"- `{stat}`: {meaning}" for stat, meaning in RUN_STATS.items()),
        "",
    ]
    if ix.published:
        papers = sorted({(p.paper, p.citation) for p in ix.published})
        lines += ["Papers (`published.csv` holds every compared pair, raw units):", ""]
        lines += [f"- `{name}`: {citation}" for name, citation in papers]
        lines += ["", "How sure we are of each published value:", ""]
        lines += [f"- [{t}] {_TAG_MEANING[t]}" for t in TAGS]
        if ix.comparisons.empty:
            lines += ["", "No published value matches these groups and this setup."]
        else:
            columns = ["group", "paper", "metric", "tag", "table", "source", "note"]
            sources = markdown(ix.comparisons[columns])
            lines += ["", "Where each compared value comes from:", "", sources]
        lines.append("")
    return lines


def _pair_rows(ix: Index) -> pd.DataFrame:
    """One row per neighbouring pair of every tested order claim."""
    rows = []
    for number, v in enumerate(ix.verdicts, 1):
        stat = "final_train_loss" if v.claim.metric.startswith("train_loss") else v.claim.metric
        for t in v.pairs:

            def shown(x: float, stat: str = stat) -> str:
                text = formatting.number(abs(x), stat, ix.metric)
                return text if x >= 0 else f"−{text}"

            rows.append(
                {
                    "claim": number,
                    "pair (claimed better < worse)": f"{t.better} < {t.worse}",
                    "n": f"{t.n_better}, {t.n_worse}",
                    "difference": shown(t.difference),
                    "95% CI": f"[{shown(t.ci_low)}, {shown(t.ci_high)}]",
                    "p": f"{t.p:.3g}",
                    "p (Holm)": f"{t.p_holm:.3g}",
                    "detectable (power 0.8)": shown(t.detectable),
                }
            )
    return pd.DataFrame(rows)


def _claims(ix: Index) -> list[str]:
    lines = ["## Claims", ""]
    if not ix.verdicts:
        return [*lines, "This study states no claims (`report.claims`).", ""]
    table = pd.DataFrame(
        [
            {
                "#": number,
                "claim": v.claim.text,
                "verdict": f"**{v.verdict}**",
                "measured": v.measured,
                "notes": "; ".join(v.notes) or "–",
            }
            for number, v in enumerate(ix.verdicts, 1)
        ]
    )
    lines += [markdown(table), significance.RULE, ""]
    pairs = _pair_rows(ix)
    if not pairs.empty:
        units = "percentage points for errors, nats for losses, as logged otherwise"
        lines += [f"Neighbouring pairs of the order claims ({units}):", "", markdown(pairs)]
    return lines


def _deviations(ix: Index) -> list[str]:
    lines = ["## Deviations from the papers' setups", "", budget.budget_line(ix.runs) + ".", ""]
    if not ix.deviations:
        return [*lines, "None stated by the study preset (`report.deviations`).", ""]
    preset = "The study preset's (`report.deviations`; where it names a budget, the line above "
    preset += "says what was run):"
    return [*lines, preset, "", *(f"- {d}" for d in ix.deviations), ""]


def _runs(ix: Index) -> list[str]:
    lines = ["## Runs", "", markdown(ix.per_run), "Also as `runs.csv` (raw values).", ""]
    if ix.skipped:
        lines += ["Skipped (unreadable) run directories:", ""]
        lines += [f"- {s}" for s in ix.skipped]
        lines.append("")
    return lines


def write(ix: Index, out: Path) -> Path:
    experiments = sorted({str(r.config.get("experiment_name", "?")) for r in ix.runs})
    parts = [f"# Report: {', '.join(experiments)}", ""]
    for section in (_what_was_run, _figures, _results, _claims, _deviations, _runs):
        parts += section(ix)
    path = out / "README.md"
    path.write_text("\n".join(parts))
    return path

"""Result tables in Markdown, LaTeX and CSV, side by side with published values.

The CSV files hold the raw numbers (fractions, nats, seconds) straight from
``stats.group_frame``; Markdown and LaTeX show the same numbers rounded, errors in percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments.report import formatting
from experiments.report.groups import Group
from experiments.report.published import Published
from experiments.report.stats import converged, group_frame, runs_frame
from experiments.rundir import STATUSES

_SHOWN = ("final_val", "best_val", "final_test", "steps", "time_s")
_TITLES = {
    "final_val": "final val",
    "best_val": "best val",
    "final_test": "final test",
    "final_train_loss": "final train loss",
    "steps": "steps",
    "time_s": "time (s)",
}


def title(stat: str, eval_metric: str | None) -> str:
    """Column heading; eval-metric columns say their unit: 'final val (%)', 'final val (bpc)'."""
    if stat in ("final_val", "best_val", "final_test"):
        return f"{_TITLES[stat]} ({'%' if eval_metric == 'error' else eval_metric})"
    return _TITLES[stat]


@dataclass(frozen=True)
class Comparison:
    """Our value next to one published value."""

    group: Group
    published: Published
    ours: str
    #: ours minus published (raw units) for numbers; for outcomes, agree / disagree.
    difference: float | str


def runs_cell(group: Group) -> str:
    """'completed/total' and the other statuses, e.g. '2/3, 1 diverged'."""
    counts = group.status_counts
    others = [f"{counts[s]} {s}" for s in STATUSES[1:] if counts.get(s)]
    return ", ".join([f"{counts.get('completed', 0)}/{len(group.runs)}", *others])


def compare(
    groups: list[Group], published: list[Published], eval_metric: str | None
) -> list[Comparison]:
    """Every (group, published value) pair whose label, setup and metric match."""
    stats = group_frame(groups).set_index("group")
    out = []
    for g in groups:
        for p in published:
            if not p.applies_to(g, eval_metric):
                continue
            if p.metric == "converges":
                finished = [r for r in g.runs if r.status in ("completed", "diverged")]
                k = sum(converged(r) for r in finished)
                agree = k == len(finished) if p.value else k == 0
                if not finished:
                    verdict = "no finished run"
                elif 0 < k < len(finished):
                    verdict = "mixed"
                else:
                    verdict = "agrees" if agree else "disagrees"
                out.append(Comparison(g, p, f"{k}/{len(finished)} converged", verdict))
                continue
            row = stats.loc[g.label]
            mean, std, n = row[f"{p.stat}_mean"], row[f"{p.stat}_std"], row[f"{p.stat}_n"]
            ours = formatting.mean_std(mean, std, n, p.stat, eval_metric)
            out.append(Comparison(g, p, ours, float(mean - p.value) if n else math.nan))
    return out


def _published_text(c: Comparison, eval_metric: str | None) -> str:
    p = c.published
    if p.metric == "converges":
        shown = "converges" if p.value else "fails"
    else:
        shown = formatting.number(float(p.value), p.stat, eval_metric)
    return f"{shown} [{p.tag}] ({p.paper})"


def _difference_text(c: Comparison, eval_metric: str | None) -> str:
    if isinstance(c.difference, str):
        return c.difference
    if math.isnan(c.difference):
        return "–"
    shown = formatting.number(abs(c.difference), c.published.stat, eval_metric)
    return ("+" if c.difference >= 0 else "−") + shown


def results_frames(
    groups: list[Group], comparisons: list[Comparison], eval_metric: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shown table, raw CSV table): one row per group, ordered by final val (best first)."""
    raw = group_frame(groups)
    raw = raw.sort_values("final_val_mean", kind="stable", na_position="last")
    by_label = {g.label: g for g in groups}
    rows = []
    for _, r in raw.iterrows():
        g = by_label[r["group"]]
        mine = [c for c in comparisons if c.group is g]
        row = {"group": g.label, "runs": runs_cell(g)}
        for stat in _SHOWN:
            row[title(stat, eval_metric)] = formatting.mean_std(
                r[f"{stat}_mean"], r[f"{stat}_std"], r[f"{stat}_n"], stat, eval_metric
            )
        row["published"] = "; ".join(_published_text(c, eval_metric) for c in mine) or "–"
        row["Δ"] = "; ".join(_difference_text(c, eval_metric) for c in mine) or "–"
        rows.append(row)
    return pd.DataFrame(rows), raw.reset_index(drop=True)


def published_frame(comparisons: list[Comparison]) -> pd.DataFrame:
    """Long CSV of every comparison, raw units (fractions for errors)."""
    return pd.DataFrame(
        [
            {
                "group": c.group.label,
                "paper": c.published.paper,
                "metric": c.published.metric,
                "published": c.published.value,
                "tag": c.published.tag,
                "table": c.published.table,
                "source": c.published.source,
                "note": c.published.note,
                "ours": c.ours,
                "difference": c.difference,
            }
            for c in comparisons
        ],
        columns=[
            "group",
            "paper",
            "metric",
            "published",
            "tag",
            "table",
            "source",
            "note",
            "ours",
            "difference",
        ],
    )


def runs_frames(groups: list[Group], eval_metric: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shown, raw) per-run tables: what each seed did."""
    raw = runs_frame(groups)
    shown = raw[["run", "group", "seed", "status"]].copy()
    for stat in ("final_val", "final_test", "final_train_loss", "steps", "time_s"):
        shown[title(stat, eval_metric)] = [
            formatting.number(v, stat, eval_metric) for v in raw[stat]
        ]
    return shown, raw


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "–": "--"}


def _latex_cell(value: object) -> str:
    text = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(value))
    for symbol, tex in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, tex)
    return text


def latex(frame: pd.DataFrame, caption: str) -> str:
    """A booktabs table environment ready to \\input into a paper."""
    spec = "l" * len(frame.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering\small",
        rf"\caption{{{_latex_cell(caption)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_latex_cell(c) for c in frame.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_latex_cell(v) for v in row) + r" \\" for row in frame.itertuples(False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write(shown: pd.DataFrame, raw: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    """``stem``.md, .tex (shown numbers) and .csv (raw numbers)."""
    paths = [stem.with_suffix(s) for s in (".md", ".tex", ".csv")]
    paths[0].write_text(markdown(shown))
    paths[1].write_text(latex(shown, caption))
    raw.to_csv(paths[2], index=False)
    return paths

"""The training budget the runs actually got, and how their time was measured.

A preset's deviations describe the budget it was written for; a command line may cut it
(``trainer.max_steps=3000``), and the report must say what was run, not what was planned.
The steps, epochs and stop reason come from summary.json; budget overrides from the run's
``.hydra/overrides.yaml`` (read as plain YAML: a run directory is data, not code).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import yaml

from experiments.report import timing
from experiments.report.runs import Run
from experiments.rundir import RunDir

#: config keys that set the training budget.
BUDGET_KEYS = ("trainer.max_steps", "trainer.max_epochs", "trainer.max_time_s")


def budget_overrides(run: Run) -> list[str]:
    """The run's command-line overrides of BUDGET_KEYS (``key=value``), if it saved them."""
    path = RunDir(run.path).overrides
    try:
        overrides = yaml.safe_load(path.read_text()) if path.is_file() else []
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(overrides, list):
        return []
    return [str(o) for o in overrides if str(o).lstrip("+~").split("=", 1)[0] in BUDGET_KEYS]


def _counted(values: list[str]) -> str:
    counts = Counter(values)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{v} ({n} runs)" for v, n in counts.most_common())


def budget_line(runs: list[Run]) -> str:
    """'Budget actually run: ...' from the summaries (steps, epochs, stop reason, overrides)."""

    def one(run: Run) -> str:
        s = run.summary
        step, epoch = s.get("step"), s.get("epoch")
        text = f"{step} of {s.get('total_steps', '?')} steps"
        if isinstance(epoch, int | float):
            text += f" ({epoch:.3g} epochs)"
        reason = s.get("stop_reason")
        return text + (f", stopped by {reason}" if reason else f", {run.status}")

    line = f"Budget actually run: {_counted([one(r) for r in runs])}"
    overrides = sorted({o for r in runs for o in budget_overrides(r)})
    if overrides:
        line += f"; set on the command line: {', '.join(f'`{o}`' for o in overrides)}"
    return line


def _span(values: list[float], digits: str = ".1f") -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "–"
    lo, hi = min(finite), max(finite)
    return f"{lo:{digits}}" if lo == hi else f"{lo:{digits}}–{hi:{digits}}"


def time_lines(runs: list[Run]) -> list[str]:
    """Wall and CPU training seconds, CPU use, and a warning when runs were contended."""
    wall = [float(r.summary.get("train_time_s") or math.nan) for r in runs]
    cpu = [float(r.summary.get("train_cpu_s") or math.nan) for r in runs]
    use = [timing.utilisation(r) for r in runs]
    lines = [f"- Training time per run: wall {_span(wall)} s"]
    if not np.isfinite(cpu).any():
        lines[0] += "; CPU time not recorded (runs made before it was logged)"
        return lines
    lines[0] += (
        f", CPU {_span(cpu)} s; CPU use (CPU time / (wall time x threads)) {_span(use, '.0%')}"
    )
    note = timing.contention_note(runs)
    if note:
        lines.append(f"- **Warning: contended CPU.** {note}.")
    return lines

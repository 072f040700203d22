"""How numbers read in tables, claims and the index: errors in percent, the rest as logged.

CSV outputs keep the raw values (fractions, nats); only human-facing text goes through here.
"""

from __future__ import annotations

import math

#: stats measured in the task's eval metric (error is a fraction, shown in percent).
_EVAL_STATS = ("final_val", "best_val", "final_test")


def factor(stat: str, eval_metric: str | None) -> float:
    """Multiplier from stored value to shown value (100 for error rates)."""
    return 100.0 if stat in _EVAL_STATS and eval_metric == "error" else 1.0


def unit(stat: str, eval_metric: str | None) -> str:
    if stat in _EVAL_STATS:
        return "error (%)" if eval_metric == "error" else str(eval_metric or "metric")
    return {"final_train_loss": "loss (nats)", "steps": "steps", "time_s": "seconds"}.get(
        stat, stat
    )


def number(value: float, stat: str, eval_metric: str | None) -> str:
    """One value in shown units, with precision suited to the stat."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    shown = float(value) * factor(stat, eval_metric)
    if stat == "steps":
        return f"{shown:.0f}"
    if stat == "time_s":
        return f"{shown:.1f}"
    return f"{shown:.2f}" if factor(stat, eval_metric) != 1.0 else f"{shown:.4f}"


def mean_std(mean: float, std: float, n: int, stat: str, eval_metric: str | None) -> str:
    """'mean ± std (n)'; the std is left out for one run, everything for none."""
    if n == 0:
        return "–"
    text = number(mean, stat, eval_metric)
    if n > 1 and not math.isnan(std):
        text += f" ± {number(std, stat, eval_metric)}"
    return f"{text} ({n})"

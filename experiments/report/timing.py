"""Which clock an equal-time comparison reads, and whether a run shared its CPU.

Wall time is what a user waits for, but on a shared machine it measures the neighbours as
much as the run: the same quickstart job took 101.9 s once and 6.7 s on a rerun with identical
results. The trainer therefore also logs the process's CPU time (``cpu_s`` in metrics.csv,
``train_cpu_s`` in summary.json) over the same stretches as ``time_s``. A run that waited for
the CPU has CPU time well below wall time x threads; its CPU seconds are still what its steps
cost. With one thread per run (the _cpu presets) they are close to the wall time the run takes
alone; with several, threads that spin at a barrier while a sibling is descheduled count CPU
time too, so a contended multi-threaded run's CPU seconds are inflated as well, though far less
than its wall time.

Runs written before CPU time was logged have no ``cpu_s``: their comparisons fall back to wall
time, and the report says so.
"""

from __future__ import annotations

import math

from experiments.report.runs import Run
from experiments.rundir import CPU_S, TIME_S

#: a run whose CPU time is below this fraction of wall time x threads waited for the CPU.
CONTENDED_BELOW = 0.75
#: metrics.csv column -> how the axis reads in text and on a figure.
AXES = {CPU_S: "CPU time", TIME_S: "wall time"}


def has_cpu_time(run: Run) -> bool:
    return CPU_S in run.metrics.columns and bool(run.metrics[CPU_S].notna().any())


def equal_time_axis(runs: list[Run]) -> str:
    """``cpu_s`` when every run logged CPU time, else ``time_s``."""
    return CPU_S if runs and all(has_cpu_time(r) for r in runs) else TIME_S


def utilisation(run: Run) -> float:
    """Training CPU time / (training wall time x threads): about 1 alone, lower when the run
    waited for the CPU (NaN when the run did not record CPU time)."""
    s = run.summary
    cpu, wall, threads = s.get("train_cpu_s"), s.get("train_time_s"), s.get("threads") or 1
    if cpu is None or not wall:
        return math.nan
    return float(cpu) / (float(wall) * float(threads))


def contended(runs: list[Run]) -> list[Run]:
    """The runs that spent much of their training time waiting for the CPU."""
    return [r for r in runs if utilisation(r) < CONTENDED_BELOW]


def contention_note(runs: list[Run]) -> str | None:
    """One sentence naming the contended runs, or None when every run had its CPU."""
    waited = contended(runs)
    if not waited:
        return None
    shown = ", ".join(f"{r.name} ({utilisation(r):.0%})" for r in waited[:6])
    more = f" and {len(waited) - 6} more" if len(waited) > 6 else ""
    return (
        f"{len(waited)} of {len(runs)} runs were contended (CPU time below "
        f"{CONTENDED_BELOW:.0%} of wall time x threads: {shown}{more}); their wall times "
        "measure the machine's load, not the unit"
    )

"""How many CPU threads a run gets: one rule for every launcher, so a seed gives the same numbers
under the basic launcher and under joblib (summary.json records the count)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM allocation, taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def parallel_jobs(n_jobs: int | None) -> int:
    """How many jobs a launcher runs at once: joblib's ``n_jobs`` (-1: one per core), else 1."""
    if not n_jobs:
        return 1
    return n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)


def threads_for(parallel: int) -> int:
    """torch threads of one job when ``parallel`` jobs share the usable cores; the rule for
    every launcher when ``trainer.threads`` is null (summary.json records the count)."""
    return max(1, usable_cores() // parallel)

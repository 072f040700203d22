"""Orderings and outcomes a paper claims, judged against our runs.

A study preset states claims under the top-level ``report:`` key, so every run's
``.hydra/config.yaml`` carries them and the report needs nothing but the run directories::

    report:
      published: li2018_mpelu          # optional: name(s) of experiments/report/published/*.yaml
      deviations: ["CIFAR-10 instead of ImageNet"]   # optional: shown in the report index
      claims:
        - text: "PReLU < ELU < ReLU in test error (Li et al.)"
          order: [prelu, elu, relu]    # group references, best (lowest value) first
          metric: final_test           # see ORDER_METRICS
        - text: "ReLU diverges, ELU converges"
          diverges: [relu]
          converges: [elu]
        - text: "Sigmoid does not converge"
          fails: [sigmoid]               # diverged, or finished without learning

Group references follow ``experiments.report.groups`` (the label, or tokens of it such as
``relu`` or ``init=xavier``). ``report: false`` turns the report off altogether.

Judging an **order** claim (the statistics are in ``significance``):

- Each reference must name exactly one group, else the verdict is ``ambiguous``.
- Only completed runs count; diverged runs are left out and listed. A group with fewer than
  two completed runs makes the verdict ``not enough runs``; a compared run that logged fewer
  than MIN_ROWS training rows (a budget cut below the logging interval) ``not enough data``.
- Neighbouring groups are compared with Welch's t-test, Holm-corrected across the pairs:
  ``held``, ``direction held, not significant (n = ...)``, ``direction reversed, not
  significant (n = ...)`` or ``contradicted`` (some pair significantly reversed). Whether
  neighbouring groups' mean ± std overlap is noted too.
- ``train_loss_at_time`` compares the training loss at the largest time every compared run
  reached (linear interpolation between logged rows), on CPU seconds when every run logged
  them, else on wall time (see ``timing``); ``train_loss_at_step`` does the same on steps.

Judging an **outcome** claim (``diverges`` / ``converges`` / ``fails``): a reference may name
several groups, and each must agree in every finished run; the measured column says k of n
seeds. A run diverged when its status is ``diverged``; it converged when it completed with
its last training loss below its first (a flat, stalled net does not count); it failed when it
did not converge. ``did not hold`` as soon as one finished run contradicts the claim; ``not
enough runs`` when a group has no finished run; ``not enough data`` when a completed run
logged fewer than MIN_ROWS training rows (too few to tell a falling loss from noise).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.report import formatting, significance, timing
from experiments.report.groups import Group, select
from experiments.report.runs import ReportError, Run
from experiments.report.stats import DIAGNOSTIC_STATS, converged, diagnostic_stats, run_stats
from experiments.rundir import CPU_S, STEP, TIME_S, TRAIN_LOSS

#: order-claim metrics -> the per-run value they compare (all lower-is-better).
ORDER_METRICS = (
    "final_test",
    "final_val",
    "best_val",
    "final_train_loss",
    "train_loss_at_time",
    "train_loss_at_step",
    *DIAGNOSTIC_STATS,
)
ALIASES = {
    "test_error": "final_test",
    "test_bpc": "final_test",
    "val_error": "final_val",
    "val_bpc": "final_val",
}
#: verdicts of order claims (the two "not significant" ones are followed by the seeds per group).
ORDER_VERDICTS = (
    "held",
    "direction held, not significant",
    "direction reversed, not significant",
    "contradicted",
)
VERDICTS = (*ORDER_VERDICTS, "did not hold", "not enough runs", "not enough data", "ambiguous")
#: the fewest metrics.csv rows a compared run must have logged for a verdict.
MIN_ROWS = 2
_KEYS = ("text", "order", "metric", "diverges", "converges", "fails")
#: outcome-claim keys -> (what each finished run of the named groups must have done, the test).
_OUTCOMES: dict[str, tuple[str, Callable[[Run], bool]]] = {
    "diverges": ("diverged", lambda r: r.status == "diverged"),
    "converges": ("converged", converged),
    "fails": ("failed to converge", lambda r: not converged(r)),
}


@dataclass(frozen=True)
class Claim:
    text: str
    order: tuple[str, ...] = ()
    metric: str = ""
    diverges: tuple[str, ...] = ()
    converges: tuple[str, ...] = ()
    fails: tuple[str, ...] = ()


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    #: what we measured: the groups in our order with their spread, or the outcomes.
    measured: str
    notes: list[str] = field(default_factory=list)
    #: an order claim's neighbouring-pair tests (empty when it was not tested).
    pairs: list[significance.PairTest] = field(default_factory=list)


def _references(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ReportError(f"{where}: {key!r} must be a list of group labels, got {value!r}")
    return tuple(value)


def parse_claim(raw: Any, index: int = 0) -> Claim:
    """Validate one claim mapping; errors name the claim and the valid choices."""
    where = f"report.claims[{index}]"
    if not isinstance(raw, dict):
        raise ReportError(f"{where}: expected a mapping with 'text', got {raw!r}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ReportError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(_KEYS)}")
    text = raw.get("text")
    if not isinstance(text, str) or not text:
        raise ReportError(f"{where}: needs a 'text' string")
    where = f"{where} ({text!r})"
    has_order = "order" in raw
    has_outcome = any(key in raw for key in _OUTCOMES)
    if has_order == has_outcome:
        raise ReportError(f"{where}: give either 'order' (+ 'metric') or {'/'.join(_OUTCOMES)}")
    if has_order:
        order = _references(raw["order"], "order", where)
        if len(order) < 2:
            raise ReportError(f"{where}: 'order' needs at least two groups")
        metric = ALIASES.get(raw.get("metric", ""), raw.get("metric", ""))
        if metric not in ORDER_METRICS:
            valid = ", ".join(ORDER_METRICS + tuple(ALIASES))
            raise ReportError(f"{where}: metric {raw.get('metric')!r}; valid: {valid}")
        return Claim(text=text, order=order, metric=metric)
    if "metric" in raw:
        raise ReportError(f"{where}: 'metric' only applies to 'order' claims")
    return Claim(text=text, **{k: _references(raw.get(k, []), k, where) for k in _OUTCOMES})


def parse_claims(raw: Any) -> list[Claim]:
    """``report.claims`` as Claims (None or [] -> no claims)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ReportError(f"report.claims: expected a list, got {raw!r}")
    return [parse_claim(item, i) for i, item in enumerate(raw)]


def _interpolated(run: Run, x: str, at: float) -> float:
    frame = run.metrics[[x, TRAIN_LOSS]].astype(float)
    frame = frame[np.isfinite(frame).all(axis=1)]
    return float(np.interp(at, frame[x], frame[TRAIN_LOSS])) if len(frame) else float("nan")


def _order_values(claim: Claim, groups: list[Group]) -> tuple[list[np.ndarray], str, list[str]]:
    """Per group, the compared value of each completed run, where it was taken, and notes."""
    runs = [g.completed for g in groups]
    if claim.metric in ("train_loss_at_time", "train_loss_at_step"):
        flat = [r for rs in runs for r in rs]
        x = timing.equal_time_axis(flat) if claim.metric == "train_loss_at_time" else STEP
        at = min(float(r.metrics[x].max()) for r in flat)
        notes = []
        if x == STEP:
            where = f" at step {at:.4g}"
        else:
            where = f" at {timing.AXES[x]} {at:.4g} s"
            if x == TIME_S:
                notes.append("wall time: some runs logged no CPU time (made before it was)")
            contention = timing.contention_note(flat)
            if contention:
                notes.append(contention + (" (CPU time used)" if x == CPU_S else ""))
        return [np.array([_interpolated(r, x, at) for r in rs]) for rs in runs], where, notes
    if claim.metric in DIAGNOSTIC_STATS:
        values = [np.array([diagnostic_stats(r)[claim.metric] for r in rs]) for rs in runs]
        return values, " at the last diagnostics step", []
    return [np.array([run_stats(r)[claim.metric] for r in rs]) for rs in runs], "", []


def _short(runs: list[Run]) -> list[Run]:
    """Runs that logged fewer than MIN_ROWS finite training losses."""
    return [r for r in runs if int(r.metrics[TRAIN_LOSS].astype(float).notna().sum()) < MIN_ROWS]


def _too_short(runs: list[Run]) -> str:
    short = _short(runs)
    rows = ", ".join(
        f"{r.name}: {int(r.metrics['train_loss'].notna().sum())} row(s) by step "
        f"{formatting.number(run_stats(r)['steps'], 'steps', None)}"
        for r in short[:4]
    )
    return f"fewer than {MIN_ROWS} logged training rows ({rows}); rerun with the preset's budget"


def _judge_order(claim: Claim, groups: list[Group], eval_metric: str | None) -> Verdict:
    chosen: list[Group] = []
    for ref in claim.order:
        found = select(ref, groups)
        if len(found) > 1:
            names = ", ".join(g.label for g in found)
            return Verdict(claim, "ambiguous", f"{ref!r} names {len(found)} groups: {names}")
        if not found or not found[0].completed:
            why = "no such group" if not found else "no completed run"
            return Verdict(claim, "not enough runs", f"{ref}: {why}")
        chosen.append(found[0])
    if _short([r for g in chosen for r in g.completed]):
        runs = [r for g in chosen for r in g.completed]
        return Verdict(claim, "not enough data", _too_short(runs))
    values, where, notes = _order_values(claim, chosen)
    values = [v[np.isfinite(v)] for v in values]
    if any(len(v) == 0 for v in values):
        empty = [g.label for g, v in zip(chosen, values, strict=True) if len(v) == 0]
        return Verdict(claim, "not enough data", f"no {claim.metric} logged for {empty}")
    means = [float(v.mean()) for v in values]
    stds = [float(v.std(ddof=1)) if len(v) > 1 else 0.0 for v in values]
    stat = "final_train_loss" if claim.metric.startswith("train_loss") else claim.metric
    ranked = sorted(range(len(chosen)), key=lambda i: means[i])
    spread = [
        formatting.mean_std(m, s, len(v), stat, eval_metric)
        for m, s, v in zip(means, stds, values, strict=True)
    ]
    measured = " < ".join(f"{chosen[i].label} {spread[i]}" for i in ranked)
    notes += [
        f"{g.label}: {g.status_counts['diverged']} diverged run(s) left out"
        for g in chosen
        if g.status_counts["diverged"]
    ]
    overlaps = [
        f"{chosen[a].label} and {chosen[b].label}"
        for a, b in itertools.pairwise(ranked)
        if means[a] + stds[a] >= means[b] - stds[b]
    ]
    single = [chosen[i].label for i in ranked if len(values[i]) < 2]
    if single:
        notes.append(f"one run only ({', '.join(single)}): no spread to compare")
    elif overlaps:
        notes.append(f"mean ± std overlap between {'; '.join(overlaps)}")
    else:
        notes.append("neighbouring groups separated by more than their std")
    few = [g.label for g, v in zip(chosen, values, strict=True) if len(v) < significance.MIN_RUNS]
    if few:
        why = f"fewer than {significance.MIN_RUNS} completed runs with a value: {', '.join(few)}"
        return Verdict(claim, "not enough runs", measured + where, [*notes, why])
    pairs = significance.compare_order([g.label for g in chosen], values)
    return Verdict(claim, significance.verdict(pairs), measured + where, notes, pairs)


def _judge_outcome(claim: Claim, groups: list[Group]) -> Verdict:
    parts: list[str] = []
    contradicted = missing = False
    compared: list[Run] = []
    for key, (expect, agrees) in _OUTCOMES.items():
        for ref in getattr(claim, key):
            found = select(ref, groups)
            if not found:
                parts.append(f"{ref}: no such group")
                missing = True
            for g in found:
                finished = [r for r in g.runs if r.status in ("completed", "diverged")]
                agree = sum(agrees(r) for r in finished)
                parts.append(f"{g.label}: {agree} of {len(finished)} seeds {expect}")
                missing |= not finished
                contradicted |= agree < len(finished)
                compared += [r for r in finished if r.status == "completed"]
    if _short(compared):
        return Verdict(claim, "not enough data", "; ".join(parts), [_too_short(compared)])
    verdict = "did not hold" if contradicted else "not enough runs" if missing else "held"
    return Verdict(claim, verdict, "; ".join(parts))


def judge(claim: Claim, groups: list[Group], eval_metric: str | None) -> Verdict:
    """One of VERDICTS (order verdicts may carry the seeds per group), with what we measured."""
    if claim.order:
        return _judge_order(claim, groups, eval_metric)
    return _judge_outcome(claim, groups)

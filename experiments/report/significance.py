"""Is a claimed ordering more than seed noise? Welch's t-test per neighbouring pair, Holm's
correction across the pairs, and the smallest difference the seeds at hand could detect.

With 3-5 seeds and differences of a few tenths of a point, the order of the means is often
chance. Each pair of neighbouring groups in the claimed order (best first, lower is better)
is compared on its per-seed values with Welch's t-test (unequal variances: units differ in
how much they vary across seeds), two-sided, so that a significant reversal is seen as
readily as a confirmation. Holm's step-down correction keeps the chance of any false
"significant" among the pairs at ALPHA. The minimum detectable difference is the true
difference that this n and these spreads would find significant with probability POWER
(non-central t with Welch's df at the observed spreads; simulated Welch tests at n = 5 reach
0.78 rather than 0.80), at Holm's strictest level ALPHA / pairs: a non-significant pair with a
difference far below it says nothing either way.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
#: the fewest runs per group a t-test can use (it needs a spread in each group).
MIN_RUNS = 2


@dataclass(frozen=True)
class PairTest:
    """``better`` is claimed lower than ``worse``; ``difference`` = mean(worse) - mean(better),
    positive when the claim's direction holds."""

    better: str
    worse: str
    n_better: int
    n_worse: int
    difference: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float
    detectable: float

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA

    @property
    def direction_held(self) -> bool:
        return self.difference > 0


def welch(better: np.ndarray, worse: np.ndarray) -> tuple[float, float, float, float, float]:
    """(mean difference worse - better, its 95% CI low and high, two-sided p, Welch's df)."""
    result = stats.ttest_ind(worse, better, equal_var=False)
    difference = float(np.mean(worse) - np.mean(better))
    se2 = float(np.var(worse, ddof=1) / len(worse) + np.var(better, ddof=1) / len(better))
    if se2 == 0:  # no spread at all: scipy's p is NaN (equal means) or 0; the CI is a point
        p = 1.0 if difference == 0 else 0.0
        return difference, difference, difference, p, math.inf
    ci = result.confidence_interval(1 - ALPHA)
    return difference, float(ci.low), float(ci.high), float(result.pvalue), float(result.df)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (step-down: the i-th smallest times (m - i), kept monotone)."""
    m = len(p_values)
    adjusted = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def detectable_difference(
    sd_a: float, n_a: int, sd_b: float, n_b: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Smallest true mean difference a two-sided Welch test at ``alpha`` finds with
    probability ``power``, taking the observed standard deviations as the true ones."""
    se = math.sqrt(sd_a**2 / n_a + sd_b**2 / n_b)
    if se == 0:
        return 0.0
    df = se**4 / ((sd_a**2 / n_a) ** 2 / (n_a - 1) + (sd_b**2 / n_b) ** 2 / (n_b - 1))
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(ncp: float) -> float:
        # the lower tail (a rejection in the wrong direction) is negligible for ncp > 0, and
        # scipy's nct.cdf returns NaN for it once ncp is large
        wrong_way = float(np.nan_to_num(stats.nct.cdf(-critical, df, ncp)))
        return float(stats.nct.sf(critical, df, ncp)) + wrong_way - power

    high = critical + stats.t.ppf(power, df) + 1
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12)) * se


def compare_order(labels: list[str], values: list[np.ndarray]) -> list[PairTest]:
    """Welch + Holm for every neighbouring pair of ``labels`` (claimed best first).

    Every group needs at least MIN_RUNS finite values (the caller checks).
    """
    raw = [welch(a, b) for a, b in itertools.pairwise(values)]
    adjusted = holm([r[3] for r in raw])
    level = ALPHA / len(raw)
    tests = []
    for i, ((diff, low, high, p, _), p_holm) in enumerate(zip(raw, adjusted, strict=True)):
        a, b = values[i], values[i + 1]
        tests.append(
            PairTest(
                better=labels[i],
                worse=labels[i + 1],
                n_better=len(a),
                n_worse=len(b),
                difference=diff,
                ci_low=low,
                ci_high=high,
                p=p,
                p_holm=p_holm,
                detectable=detectable_difference(
                    float(np.std(a, ddof=1)), len(a), float(np.std(b, ddof=1)), len(b), level
                ),
            )
        )
    return tests


def verdict(tests: list[PairTest]) -> str:
    """The order claim's verdict from its pair tests (see the module docstring)."""
    sizes = ", ".join(str(n) for n in [tests[0].n_better, *(t.n_worse for t in tests)])
    if any(t.significant and not t.direction_held for t in tests):
        return "contradicted"
    if all(t.direction_held for t in tests):
        if all(t.significant for t in tests):
            return "held"
        return f"direction held, not significant (n = {sizes})"
    return f"direction reversed, not significant (n = {sizes})"


RULE = (
    "**How order claims are judged.** Each pair of neighbouring groups in the claimed order is "
    "compared on the claim's metric over its completed seeds with Welch's t-test (two-sided, "
    f"unequal variances), and Holm's correction keeps the chance of any false positive among "
    f"the pairs at α = {ALPHA}. The claim **held** when every pair differs in the claimed "
    "direction and significantly; **direction held, not significant (n = seeds per group)** "
    "when every pair is in the claimed direction but some pair is not significant; "
    "**direction reversed, not significant** when some pair is reversed but none "
    "significantly; **contradicted** when some pair is significantly reversed; **not enough "
    f"runs** when a group has fewer than {MIN_RUNS} completed runs; **not enough data** when a "
    "run logged too little to take the metric from. The pair table gives, for each pair, the "
    "mean difference (worse minus better: positive when the claim's direction holds), its "
    "95% confidence interval (Welch), p before and after Holm, and the smallest difference "
    f"these seeds would detect with power {POWER} at Holm's strictest level α / pairs: a "
    "non-significant pair whose difference is far below it is simply unresolved. Outcome "
    "claims (converges, diverges, fails) count the seeds that did so, k of n; they hold when "
    "every finished seed agrees."
)

"""Intervals and verdicts: every headline number of a study is reported with a 95% interval, and a claim is
judged by where the interval of its effect lies.

- `wilson`: a proportion k/n (Wilson score interval: good at small n and near 0 or 1, unlike the normal one).
- `diff_proportions`: p1 - p2 of two independent proportions (Newcombe's method 10, built from two Wilsons).
- `bootstrap_diff`: a statistic of sample a minus that of sample b (percentile bootstrap, seeded).
- `verdict`: "reproduced" when the effect's interval lies on the side the paper claims, "not reproduced" when
  it lies on the other side, "inconclusive at this scale" when it covers zero (or is missing).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive at this scale"


def z_of(level: float) -> float:
    """The normal quantile of a two-sided interval at `level` (1.96 for 0.95)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n ((nan, nan) when n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    z = z_of(level)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def diff_proportions(k1: float, n1: float, k2: float, n2: float, level: float = 0.95
                     ) -> tuple[float, float, float]:
    """(p1 - p2, low, high): Newcombe's hybrid score interval (from the two Wilson intervals) for the difference
    of two independent proportions."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, level)
    l2, u2 = wilson(k2, n2, level)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def bootstrap_diff(a: np.ndarray, b: np.ndarray, stat: Callable[[np.ndarray], float] = np.mean, *,
                   n_boot: int = 2000, seed: int = 0, paired: bool = False) -> tuple[float, float, float]:
    """(stat(a) - stat(b), low, high): a 95% percentile-bootstrap interval; `paired` resamples the same indices
    of a and b (e.g. the same documents under two models)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        ia = rng.integers(0, len(a), len(a))
        ib = ia if paired else rng.integers(0, len(b), len(b))
        diffs[i] = stat(a[ia]) - stat(b[ib])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(stat(a) - stat(b)), float(lo), float(hi)


def bootstrap_mean(a: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): a 95% percentile-bootstrap interval of a mean."""
    a = np.asarray(a, dtype=np.float64)
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(a.mean()), float(lo), float(hi)


def verdict(low: float, high: float, expected: str) -> str:
    """The claim's verdict from its effect's interval; `expected` is the paper's direction: "positive" or
    "negative" (the effect is defined so that this sign supports the claim)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if expected not in ("positive", "negative"):
        raise ValueError(f"expected must be positive or negative, got {expected!r}")
    sign = 1 if expected == "positive" else -1
    lo, hi = sorted((sign * low, sign * high))
    if lo > 0:
        return REPRODUCED
    if hi < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE

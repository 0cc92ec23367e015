"""The statistics of `fmflow eval`, with the standard library only.

- ``wilson``: the Wilson score interval of a rate (k successes of n).
- ``bootstrap_mean``: a percentile bootstrap interval of a mean.
- ``mcnemar_exact``: McNemar's exact test of two paired rates: under the null
  hypothesis the b records only the first variant got right and the c only
  the second did split as Binomial(b + c, 1/2); the two-sided p-value is
  twice the smaller tail, at most 1.
- ``paired_bootstrap``: the mean of paired differences with a percentile
  bootstrap interval, and a two-sided p-value from resampling the differences
  shifted to mean zero (the null hypothesis): (hits + 1) / (resamples + 1).
- ``percentile``: linear interpolation between order statistics (numpy's default).

Bootstraps draw with numpy's ``default_rng(seed)`` (fmflow depends on numpy
already), exactly as ``scipy.stats.bootstrap(..., method="percentile")``
does: the same data and seed give the same interval. Everything else is the
standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

CONFIDENCE = 0.95
RESAMPLES = 2000
CHUNK = 1 << 20
FEW_DISTINCT = 8      # at most n / 8 distinct values: resample their counts


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of the rate ``successes / n`` ((0, 1) when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _bootstrap_means(values: list[float], resamples: int, seed: int) -> list[float]:
    """The sorted means of ``resamples`` resamples (with replacement) of ``values``.

    numpy draws (a pure-Python draw costs about a microsecond: 2,000 resamples
    of 1,000 values took a second). Values with many distinct numbers (a
    similarity) are resampled by index, exactly as scipy.stats.bootstrap does
    with the same generator, in chunks of at most CHUNK indices so that memory
    stays bounded. Values with few distinct numbers (a score out of 5, a length)
    are resampled as multinomial counts of each distinct number: the same
    distribution of resamples, drawn in O(distinct) per resample instead of O(n).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    n = len(data)
    distinct, counts = np.unique(data, return_counts=True)
    if len(distinct) * FEW_DISTINCT <= n:
        drawn = rng.multinomial(n, counts / n, size=resamples)
        return sorted((drawn @ distinct / n).tolist())
    rows = max(1, CHUNK // n)
    means = [data[rng.integers(0, n, (min(rows, resamples - start), n))].mean(axis=1)
             for start in range(0, resamples, rows)]
    return sorted(np.concatenate(means).tolist())


def _quantile_of_sorted(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_mean(values: list[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                   seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values`` ((nan, nan) when empty)."""
    if not values:
        return math.nan, math.nan
    if len(set(values)) == 1:
        return values[0], values[0]
    means = _bootstrap_means(values, resamples, seed)
    tail = (1 - confidence) / 2
    return _quantile_of_sorted(means, tail), _quantile_of_sorted(means, 1 - tail)


def binomial_cdf(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in floating point."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return math.fsum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided p-value of McNemar's exact test for ``b`` and ``c`` discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * binomial_cdf(min(b, c), n))


@dataclass(frozen=True)
class PairedResult:
    difference: float        # mean of second − first
    low: float
    high: float
    p_value: float


def paired_bootstrap(first: list[float], second: list[float], confidence: float = CONFIDENCE,
                     resamples: int = RESAMPLES, seed: int = 0) -> PairedResult:
    """The mean difference ``second − first`` of paired values, its interval and a two-sided p-value."""
    if len(first) != len(second):
        raise ValueError("paired values must be as many on each side")
    diffs = [b - a for a, b in zip(first, second)]
    if not diffs:
        return PairedResult(math.nan, math.nan, math.nan, 1.0)
    observed = math.fsum(diffs) / len(diffs)
    if all(d == diffs[0] for d in diffs):
        # Every resample gives the same mean: none lies as far from 0 as it unless it is 0.
        return PairedResult(observed, observed, observed, 1.0 if observed == 0 else 1 / (resamples + 1))
    means = _bootstrap_means(diffs, resamples, seed)
    tail = (1 - confidence) / 2
    # Under the null hypothesis the differences have mean 0: shift them there and
    # count how often a resample lies as far from 0 as what was observed.
    shifted = [m - observed for m in means]
    hits = sum(1 for m in shifted if abs(m) >= abs(observed) - 1e-12)
    return PairedResult(observed, _quantile_of_sorted(means, tail), _quantile_of_sorted(means, 1 - tail),
                        (hits + 1) / (resamples + 1))


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation; nan when empty."""
    return _quantile_of_sorted(sorted(values), q / 100)

"""The eval statistics against hand-computed values and scipy (a dev dependency; the product uses none)."""

from __future__ import annotations

import math
import random

import pytest

from fmflow.evals.statistics import (binomial_cdf, bootstrap_mean, mcnemar_exact, paired_bootstrap, percentile,
                                     wilson)

scipy_stats = pytest.importorskip("scipy.stats")
np = pytest.importorskip("numpy")


# ------------------------------------------------------------------ Wilson

def test_wilson_by_hand():
    # k = 8 of n = 10, z = 1.959964: centre (0.8 + z²/20) / (1 + z²/10), half z·sqrt(0.016 + z²/400) / (1 + z²/10)
    z = 1.959963984540054
    denominator = 1 + z * z / 10
    centre = (0.8 + z * z / 20) / denominator
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / denominator
    low, high = wilson(8, 10)
    assert low == pytest.approx(centre - half, abs=1e-12)
    assert high == pytest.approx(centre + half, abs=1e-12)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)   # the textbook values


@pytest.mark.parametrize("k, n", [(0, 1), (0, 10), (1, 10), (5, 10), (10, 10), (37, 120), (999, 1000)])
def test_wilson_matches_scipy(k, n):
    expected = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson(k, n)
    assert low == pytest.approx(expected.low, abs=1e-9)
    assert high == pytest.approx(expected.high, abs=1e-9)


def test_wilson_of_nothing_is_the_whole_range():
    assert wilson(0, 0) == (0.0, 1.0)


# ------------------------------------------------------------------ McNemar

def test_mcnemar_by_hand():
    # b = 1, c = 6: P(X <= 1) for Binomial(7, 1/2) is (1 + 7) / 128; two-sided: twice that.
    assert mcnemar_exact(1, 6) == pytest.approx(16 / 128)
    assert mcnemar_exact(6, 1) == pytest.approx(16 / 128)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0          # the doubled tail passes 1: capped
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)


@pytest.mark.parametrize("b, c", [(0, 1), (2, 9), (10, 10), (12, 30), (40, 61), (150, 120)])
def test_mcnemar_matches_scipy_exact_binomial(b, c):
    expected = scipy_stats.binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_binomial_cdf_matches_scipy():
    for n in (1, 7, 40, 300):
        for k in (0, n // 3, n // 2, n - 1):
            assert binomial_cdf(k, n) == pytest.approx(scipy_stats.binom.cdf(k, n, 0.5), rel=1e-9, abs=1e-300)


# ---------------------------------------------------------------- bootstrap

def test_bootstrap_interval_is_fixed_by_its_seed():
    rng = random.Random(3)
    values = [rng.random() for _ in range(50)]
    assert bootstrap_mean(values, seed=7) == bootstrap_mean(values, seed=7)
    assert bootstrap_mean(values, seed=7) != bootstrap_mean(values, seed=8)


def test_bootstrap_interval_by_hand():
    # Two values, 0 and 1, and a seed: the interval is the 2.5th and 97.5th percentile of the
    # resampled means, each of which is (number of ones drawn) / 2, i.e. 0, 0.5 or 1.
    low, high = bootstrap_mean([0.0, 1.0], seed=1)
    assert (low, high) == (0.0, 1.0)
    assert bootstrap_mean([2.5] * 9) == (2.5, 2.5)
    assert all(math.isnan(x) for x in bootstrap_mean([]))


@pytest.mark.parametrize("n", [30, 400, 6000])   # 6,000 values: the resamples are drawn in several chunks
def test_bootstrap_interval_is_scipys_with_the_same_seed(n):
    rng = random.Random(n)
    values = [rng.gauss(0.6, 0.2) for _ in range(n)]
    low, high = bootstrap_mean(values, resamples=2000, seed=5)
    reference = scipy_stats.bootstrap((np.array(values),), np.mean, confidence_level=0.95, n_resamples=2000,
                                      method="percentile", vectorized=True,
                                      rng=np.random.default_rng(5)).confidence_interval
    assert low == pytest.approx(reference.low, rel=1e-9, abs=1e-12)
    assert high == pytest.approx(reference.high, rel=1e-9, abs=1e-12)
    mean = sum(values) / n
    half = 1.96 * float(np.std(values, ddof=1)) / math.sqrt(n)
    assert low == pytest.approx(mean - half, abs=half / 8) and high == pytest.approx(mean + half, abs=half / 8)


def test_bootstrap_of_few_distinct_values_draws_the_same_distribution_as_scipy():
    # Scores out of 5 on 1,000 records: resampled as counts of each score (multinomial), not by index.
    rng = random.Random(8)
    values = [float(rng.choice([1, 2, 2, 3, 4, 4, 4, 5])) for _ in range(1000)]
    low, high = bootstrap_mean(values, resamples=20000, seed=3)
    assert bootstrap_mean(values, resamples=20000, seed=3) == (low, high)
    reference = scipy_stats.bootstrap((np.array(values),), np.mean, n_resamples=20000, method="percentile",
                                      vectorized=True, rng=np.random.default_rng(1)).confidence_interval
    assert low == pytest.approx(reference.low, abs=0.005) and high == pytest.approx(reference.high, abs=0.005)


def test_paired_bootstrap_finds_a_real_difference_and_not_a_null_one():
    rng = random.Random(2)
    first = [rng.random() for _ in range(200)]
    better = [x + 0.1 + rng.gauss(0, 0.05) for x in first]
    same = [x + rng.gauss(0, 0.05) for x in first]
    shifted = paired_bootstrap(first, better, seed=1)
    assert shifted.p_value < 0.001 and shifted.low > 0.08 and shifted.high < 0.12
    assert shifted.difference == pytest.approx(sum(b - a for a, b in zip(first, better)) / 200)
    assert paired_bootstrap(first, same, seed=1).p_value > 0.05


def test_paired_bootstrap_p_value_by_hand():
    # Differences (0, 0, 0, 3): mean 0.75. Shifted to mean 0 they are (-0.75 ×3, 2.25); a resample's
    # mean is as far from 0 as 0.75 unless it draws the 3 exactly once: P = 1 - 4 · (1/4) · (3/4)³.
    expected = 1 - 4 * 0.25 * 0.75 ** 3
    result = paired_bootstrap([0, 0, 0, 0], [0, 0, 0, 3], resamples=20000, seed=4)
    assert result.difference == 0.75
    assert result.p_value == pytest.approx(expected, abs=0.01)
    assert paired_bootstrap([1, 2], [1, 2]).p_value == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap([1], [1, 2])


def test_percentile_matches_numpy():
    rng = random.Random(9)
    values = [rng.expovariate(3) for _ in range(101)]
    for q in (0, 5, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert math.isnan(percentile([], 50))

"""The intervals and the test behind every kept / changed figure, against known values."""

from __future__ import annotations

import numpy as np
import pytest

from orin_unlearn.benchmarks.stats import bootstrap_mean, ks_test, wilson


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (10, 19, 0.3171, 0.7267),  # the README's 10 of 19: 32-73%
        (9, 10, 0.5958, 0.9821),
        (0, 20, 0.0, 0.1611),
        (150, 150, 0.9750, 1.0),
        (135, 150, 0.8416, 0.9384),  # 90% of 150: 84-94%
    ],
)
def test_wilson_interval_matches_the_formula(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)
    z = 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert got == pytest.approx((centre - half, centre + half), abs=1e-6)


def test_wilson_of_nothing_is_none_and_bad_counts_are_refused():
    assert wilson(0, 0) is None
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(5, 3)


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    values = rng.normal(-0.05, 0.2, size=400)
    low, high = bootstrap_mean(values, seed=0)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert low == pytest.approx(values.mean() - 1.96 * se, abs=0.004)
    assert high == pytest.approx(values.mean() + 1.96 * se, abs=0.004)
    assert bootstrap_mean(values, seed=0) == (low, high)  # a fixed seed reproduces it


def test_bootstrap_edges():
    assert bootstrap_mean([]) is None
    assert bootstrap_mean([0.3]) == (0.3, 0.3)
    assert bootstrap_mean([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_ks_test_tells_shifted_samples_apart_and_not_equal_ones():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 200), rng.normal(0, 1, 200)
    assert ks_test(a, b).pvalue > 0.05
    shifted = ks_test(a, b - 2.0)
    assert shifted.pvalue < 1e-10 and shifted.statistic > 0.5
    assert ks_test([1.0, 2.0], [3.0, 4.0]).statistic == 1.0  # no overlap: the CDFs are 1 apart
    assert ks_test([], [1.0]) is None

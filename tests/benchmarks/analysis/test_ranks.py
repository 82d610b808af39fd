"""Spearman rank correlation on known data: ties, constant input, and agreement with scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orin_unlearn.benchmarks.analysis.ranks import average_ranks, spearman


def test_average_ranks_share_ties():
    assert average_ranks(np.array([10.0, 20.0, 20.0, 30.0, 20.0])).tolist() == [1.0, 3.0, 3.0, 5.0, 3.0]


def test_monotone_but_nonlinear_is_one_and_reversed_is_minus_one():
    x = np.arange(1.0, 9.0)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)


def test_ties_by_hand():
    # ranks of b: [1, 2, 3.5, 5, 3.5]; centred a . b = 8, |a|^2 = 10, |b|^2 = 9.5
    rho = spearman(np.array([1, 2, 3, 4, 5]), np.array([5, 6, 7, 8, 7]))
    assert rho == pytest.approx(8 / math.sqrt(95))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]),  # constant input
        ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]),
        ([1.0], [2.0]),  # a single pair
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]),  # not finite
    ],
)
def test_undefined_is_none_never_nan(a, b):
    assert spearman(np.array(a), np.array(b)) is None


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal lengths"):
        spearman(np.arange(3), np.arange(4))


def test_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed; the hand-made cases still run")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 6, 200), rng.integers(0, 6, 200) + rng.integers(0, 2, 200)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)

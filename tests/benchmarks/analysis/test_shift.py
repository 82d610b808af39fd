"""Activation shift: PCA and distances on shifted vs unshifted sets, and the analysis on hand-made
activations where only forget prompts move."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orin_unlearn.benchmarks.analysis import shift as shift_analysis
from orin_unlearn.benchmarks.analysis.shift import pca, shift, spread

from .fakes import FakeContext, stable_hash


def test_pca_finds_the_line_the_points_lie_on():
    t = np.linspace(-3, 3, 50)[:, None]
    direction = np.array([[3.0, 4.0, 0.0]]) / 5
    mean, comps, ratio = pca(t * direction + np.array([1.0, 2.0, 3.0]))
    assert abs(comps[0] @ direction[0]) == pytest.approx(1.0)
    assert ratio[0] == pytest.approx(1.0)
    np.testing.assert_allclose(mean, [1.0, 2.0, 3.0], atol=1e-12)


def test_unshifted_set_does_not_move():
    x = np.random.default_rng(0).normal(size=(30, 8))
    assert shift(x, x.copy()) == {"mean_l2": 0.0, "centroid": 0.0, "relative": 0.0}


def test_translated_set_moves_by_the_translation():
    x = np.random.default_rng(0).normal(size=(30, 8))
    v = np.zeros(8)
    v[:2] = [3.0, 4.0]
    r = shift(x, x + v, scale=2.5)
    assert r["mean_l2"] == pytest.approx(5.0) and r["centroid"] == pytest.approx(5.0)
    assert r["relative"] == pytest.approx(2.0)


def test_shuffled_set_moves_per_prompt_but_not_as_a_whole():
    x = np.random.default_rng(0).normal(size=(30, 8))
    r = shift(x, x[::-1].copy())
    assert r["mean_l2"] > 1.0 and r["centroid"] == pytest.approx(0.0, abs=1e-12)


def test_shapes_must_pair():
    with pytest.raises(ValueError, match="pair"):
        shift(np.zeros((3, 2)), np.zeros((4, 2)))


def test_spread_of_known_points():
    assert spread(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(1.0)


def test_analysis_only_forget_moves(tmp_path):
    forget = {json.dumps(p.messages) for p in FakeContext(tmp_path).splits.forget}
    push = np.full(6, 10.0)

    def residual(which, prompt):
        x = np.random.default_rng(stable_hash(prompt)).normal(size=(2, 6))
        if which == "after" and json.dumps(prompt.messages) in forget:
            x[1] += push
        return x

    outcome = shift_analysis.run(FakeContext(tmp_path, residual=residual, layers=[0, 1]))
    rel = outcome.summary["relative_shift"]
    assert rel["0"] == {"forget": 0.0, "neighbour": 0.0, "retain": 0.0}  # layer 0 untouched
    assert rel["1"]["forget"] > 5 and rel["1"]["neighbour"] == 0.0 and rel["1"]["retain"] == 0.0
    assert (tmp_path / "analysis" / "shift.png").is_file()

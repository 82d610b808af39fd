"""Layer sensitivity from a hand-made scores dict: masses, gradient norm, rank correlation, and
a constant signal reported as undefined and left out of the plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from orin_unlearn.benchmarks.analysis import sensitivity
from orin_unlearn.benchmarks.analysis.sensitivity import layer_sensitivity, plot

from .fakes import FakeContext

SCORES = {
    "saliency": np.array([[1.0, 2.0, 3.0], [0.0, 0.5, 0.5], [4.0, 4.0, 4.0]], dtype=np.float32),
    "fisher": np.array([[0.5, 0.5, 3.0], [0.1, 0.2, 0.1], [2.0, 1.0, 6.0]], dtype=np.float32),
    "contrast": np.ones((3, 3), dtype=np.float32),
}


def test_masses_and_gradient_norm():
    r = layer_sensitivity(SCORES)
    assert r["saliency_mass"] == pytest.approx([6.0, 1.0, 12.0])
    assert r["fisher_mass"] == pytest.approx([4.0, 0.4, 9.0])
    assert r["grad_norm"] == pytest.approx([2.0, math.sqrt(0.4), 3.0])
    assert r["spearman_layers"] == pytest.approx(1.0)  # same layer order
    assert -1.0 <= r["spearman_neurons"] <= 1.0


def test_constant_signal_is_undefined_and_not_plotted(tmp_path):
    flat = {**SCORES, "fisher": np.zeros((3, 3), dtype=np.float32)}
    r = layer_sensitivity(flat)
    assert r["spearman_layers"] is None and r["spearman_neurons"] is None
    drawn = plot({**r, "chosen_layers": [2]}, tmp_path / "s.png")
    assert drawn == ["saliency mass"]  # zero Fisher mass, and so zero gradient norm, are left out
    assert (tmp_path / "s.png").is_file()


def test_missing_signal_is_an_error():
    with pytest.raises(KeyError, match="fisher"):
        layer_sensitivity({"saliency": np.ones((2, 2))})


def test_analysis_writes_json_without_nan(tmp_path):
    flat = {**SCORES, "fisher": np.zeros((3, 3), dtype=np.float32)}
    outcome = sensitivity.run(FakeContext(tmp_path, scores=flat, layers=[0, 2]))
    text = (tmp_path / "analysis" / "sensitivity.json").read_text()
    assert "NaN" not in text
    saved = json.loads(text)
    assert saved["chosen_layers"] == [0, 2] and saved["spearman_layers"] is None
    assert "undefined" in outcome.body

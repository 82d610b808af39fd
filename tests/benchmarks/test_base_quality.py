"""The shipped tiny base meets its bars, measured here on the model itself (greedy decoding)."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.base_quality import BARS, measure_model_dir


@pytest.fixture(scope="module")
def measured(base_dir):
    # A fixed random sample of 400 prompts per set keeps this test short; the forget set is whole.
    return measure_model_dir(base_dir, limit=400)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BARS))
def test_shipped_base_meets_bar(measured, name):
    got = measured["sets"][name]["all"]["accuracy"]
    assert got >= BARS[name], f"{name}: measured {got:.3f} < bar {BARS[name]}"


@pytest.mark.slow
def test_open_recommendations_are_mostly_valid(measured):
    assert measured["sets"]["heldout_open"]["all"]["accuracy"] >= 0.8


def test_shipped_checkpoint_is_small(base_dir):
    size = sum(p.stat().st_size for p in base_dir.iterdir() if p.is_file())
    assert size <= 20 * 1024 * 1024, size

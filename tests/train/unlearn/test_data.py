"""The run's training prompts: the retain budget caps retain + neighbour prompts, nothing else."""

from __future__ import annotations

from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.data import build_data


def test_retain_budget_caps_retain_and_neighbour_only():
    full = build_data(UnlearnConfig())
    capped = build_data(UnlearnConfig(retain_examples=64, neighbour_fraction=0.25))
    assert (len(capped.neighbour), len(capped.retain)) == (16, 48)
    assert set(map(repr, capped.neighbour)) <= set(map(repr, full.neighbour))
    assert set(map(repr, capped.retain)) <= set(map(repr, full.retain))
    assert capped.forget_target == full.forget_target and capped.eval_sets == full.eval_sets
    again = build_data(UnlearnConfig(retain_examples=64, neighbour_fraction=0.25))
    other_seed = build_data(UnlearnConfig(retain_examples=64, neighbour_fraction=0.25, seed=1))
    assert again.retain == capped.retain and other_seed.retain != capped.retain

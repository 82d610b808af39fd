"""The bars of an unlearning run: each configured bar checked against a before/after pair, a
missed or unmeasurable one failing the run."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.forgetting import UnlearningMetrics
from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.train.unlearn.bars import check, verdict
from orin_unlearn.train.unlearn.config import UnlearnConfig

M = UnlearningMetrics.from_json
BEFORE = M({"forget": {"leak": 0.8}, "retain": {"accuracy": 0.5}, "neighbour": {"accuracy": 0.4}})


def _after(leak: float, retain: float, kept: float | None) -> UnlearningMetrics:
    return M(
        {
            "forget": {"leak": leak, "substitute_valid": 1.0},
            "retain": {"accuracy": retain, "kept": kept},
            "neighbour": {"accuracy": 0.4, "kept": 1.0},
        }
    )


def test_leak_ratio_is_relative_to_the_base():
    assert verdict({"leak_ratio": 0.1}, BEFORE, _after(0.08, 0.5, 1.0))["ok"]
    assert not verdict({"leak_ratio": 0.1}, BEFORE, _after(0.09, 0.5, 1.0))["ok"]


def test_every_bar_must_hold_and_each_is_reported():
    got = verdict({"leak": 0.05, "retain_drop": 0.02, "retain_kept": 0.95}, BEFORE, _after(0.0, 0.47, 0.9))
    assert not got["ok"]
    by_bar = {c["bar"]: c for c in got["checks"]}
    assert by_bar["leak"]["ok"]
    assert not by_bar["retain_drop"]["ok"] and by_bar["retain_drop"]["value"] == pytest.approx(0.03)
    assert not by_bar["retain_kept"]["ok"]


def test_a_bar_that_was_not_measured_fails():
    got = verdict({"retain_kept": 0.95, "drift_kl": 0.05}, BEFORE, _after(0.0, 0.5, None))
    assert [c["ok"] for c in got["checks"]] == [False, False]


def test_unknown_bar_is_a_config_error():
    with pytest.raises(ConfigError, match="bars"):
        UnlearnConfig(bars={"leek": 0.05})


def test_a_value_at_the_bar_meets_it_despite_float_rounding():
    before = M({"neighbour": {"accuracy": 0.9}})
    after = M({"neighbour": {"accuracy": 0.85}})  # 20 of 400 prompts lost: exactly the 5-point bar
    assert 0.9 - 0.85 > 0.05
    assert check({"neighbour_drop": 0.05}, before, after)[0].ok
    assert not check({"neighbour_drop": 0.05}, before, M({"neighbour": {"accuracy": 0.8475}}))[0].ok

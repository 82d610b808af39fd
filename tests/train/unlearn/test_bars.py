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
    bars = {"leak": 0.05, "retain_drop": 0.02, "retain_text_kept": 0.95}
    got = verdict(bars, BEFORE, _after(0.0, 0.47, 0.9))
    assert not got["ok"]
    by_bar = {c["bar"]: c for c in got["checks"]}
    assert by_bar["leak"]["ok"]
    assert not by_bar["retain_drop"]["ok"] and by_bar["retain_drop"]["value"] == pytest.approx(0.03)
    assert not by_bar["retain_text_kept"]["ok"] and by_bar["retain_text_kept"]["value"] == 0.9


def test_a_bar_that_was_not_measured_fails():
    got = verdict({"retain_kept": 0.95, "drift_kl": 0.05}, BEFORE, _after(0.0, 0.5, 1.0))  # no bank, no drift
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


def _bank(neighbour_kept: float, retain_delta: float, forget_right: float, control_right: float, drop: float):
    sets = {
        "neighbour": {
            "n": 300,
            "right": 0.3,
            "gold_lp": -2.0,
            "base_right": 100,
            "kept": neighbour_kept,
            "kept_ci": [neighbour_kept - 0.05, min(1.0, neighbour_kept + 0.03)],
            "delta": -0.01,
            "delta_ci": [-0.02, 0.0],
            "delta_all": -0.01,
        },
        "retain": {
            "n": 300,
            "right": 0.3,
            "gold_lp": -2.0,
            "base_right": 100,
            "kept": 0.99,
            "kept_ci": [0.95, 1.0],
            "delta": retain_delta,
            "delta_ci": [retain_delta - 0.01, retain_delta + 0.01],
            "delta_all": retain_delta,
        },
        "forget": {
            "n": 120,
            "right": forget_right,
            "gold_lp": -4.0,
            "base_right": 60,
            "kept": 0.1,
            "kept_ci": [0.05, 0.2],
            "delta": -drop,
            "delta_ci": [-drop - 0.1, -drop + 0.1],
            "delta_all": -drop,
        },
        "control": {"n": 48, "right": control_right, "gold_lp": -4.0},
    }
    return M({"knowledge": {"sets": sets, "forget_vs_control": None, "items_sha256": "x"}})


def test_knowledge_bars_read_the_item_bank_and_carry_its_interval():
    bars = {
        "neighbour_kept": 0.95,
        "retain_delta": -0.02,
        "forget_over_control": 0.10,
        "forget_gold_drop": 2.0,
    }
    good = verdict(bars, BEFORE, _bank(0.97, -0.01, 0.12, 0.05, 2.5))
    assert good["ok"]
    by_bar = {c["bar"]: c for c in good["checks"]}
    assert by_bar["neighbour_kept"]["interval"] == pytest.approx((0.92, 1.0))
    assert by_bar["forget_over_control"]["value"] == pytest.approx(0.07)
    assert by_bar["forget_gold_drop"]["value"] == pytest.approx(2.5)
    assert "95% CI 0.920-1.000" in check(bars, BEFORE, _bank(0.97, -0.01, 0.12, 0.05, 2.5))[0].line()
    bad = {c["bar"]: c["ok"] for c in verdict(bars, BEFORE, _bank(0.94, -0.03, 0.20, 0.05, 1.5))["checks"]}
    assert bad == dict.fromkeys(bars, False)


def test_free_text_kept_has_its_own_bars():
    got = verdict({"retain_text_kept": 0.95}, BEFORE, _after(0.0, 0.5, 0.96))
    assert got["ok"] and got["checks"][0]["value"] == 0.96

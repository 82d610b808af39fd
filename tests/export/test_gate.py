"""The export gate's arithmetic: one point of leak or retain is the limit, in either direction."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.forgetting import AccuracyMetrics, ForgetMetrics, UnlearningMetrics
from orin_unlearn.edge.errors import ExportGateError
from orin_unlearn.export.gate import GateVerdict, gate, raise_on_failure


def metrics(leak: float, retain: float, n_forget: int = 100, n_retain: int = 400) -> UnlearningMetrics:
    return UnlearningMetrics(
        ForgetMetrics(n=n_forget, leak=leak), retain=AccuracyMetrics(n=n_retain, accuracy=retain)
    )


def test_equal_artifact_passes():
    assert gate(metrics(0.0, 0.9), metrics(0.0, 0.9)).ok


def test_one_point_is_allowed_more_is_not():
    assert gate(metrics(0.0, 0.90), metrics(0.01, 0.89)).ok
    worse_leak = gate(metrics(0.0, 0.90), metrics(0.02, 0.90))
    worse_retain = gate(metrics(0.0, 0.90), metrics(0.0, 0.885))
    assert not worse_leak.ok and not worse_retain.ok
    assert [c.ok for c in worse_leak.checks] == [False, True]
    assert [c.ok for c in worse_retain.checks] == [True, False]
    assert worse_leak.failures() == ["held-out forget leak 0.020 vs 0.000 (at most 1 point(s) higher)"]


def test_a_verdict_round_trips_through_json():
    verdict = gate(metrics(0.0, 0.90), metrics(0.02, 0.90))
    data = verdict.to_json()
    assert data["ok"] is False and data["checks"][0]["check"] == "held-out forget leak"
    assert GateVerdict.from_json(data) == verdict


def test_better_artifact_passes():
    assert gate(metrics(0.10, 0.80), metrics(0.0, 0.95)).ok


def test_one_more_leak_in_34_prompts_fails():
    assert not gate(metrics(0 / 34, 0.9, 34), metrics(1 / 34, 0.9, 34)).ok


def test_different_prompt_counts_are_not_comparable():
    with pytest.raises(ValueError, match="not comparable"):
        gate(metrics(0.0, 0.9, n_forget=34), metrics(0.0, 0.9, n_forget=30))


def test_raise_on_failure_names_the_variant_and_check():
    raise_on_failure("fp16", gate(metrics(0.0, 0.9), metrics(0.0, 0.9)))
    with pytest.raises(ExportGateError, match="fp16.*retain accuracy"):
        raise_on_failure("fp16", gate(metrics(0.0, 0.9), metrics(0.0, 0.5)))


def banked(leak: float, forget: float, neighbour: float, retain: float) -> UnlearningMetrics:
    from orin_unlearn.benchmarks.knowledge import KnowledgeMetrics, SetKnowledge

    sets = {
        name: SetKnowledge(n=300, right=right, gold_lp=-2.0)
        for name, right in (("forget", forget), ("neighbour", neighbour), ("retain", retain))
    }
    return UnlearningMetrics(ForgetMetrics(n=34, leak=leak), knowledge=KnowledgeMetrics(sets))


def test_with_an_item_bank_the_gate_reads_the_bank_not_free_text():
    reference = banked(0.0, 0.10, 0.30, 0.35)
    assert gate(reference, banked(0.0, 0.12, 0.28, 0.33)).ok  # two points each way is allowed
    checks = {c.check: c.ok for c in gate(reference, banked(0.0, 0.13, 0.27, 0.35)).checks}
    assert checks == {
        "held-out forget leak": True,
        "bank forget items ranked right": False,  # the knowledge comes back
        "bank neighbour items ranked right": False,
        "bank retain items ranked right": True,
    }


def test_banks_of_different_sizes_are_not_comparable():
    from dataclasses import replace

    other = banked(0.0, 0.1, 0.3, 0.3)
    sets = dict(other.knowledge.sets, retain=replace(other.knowledge.sets["retain"], n=299))
    with pytest.raises(ValueError, match="bank retain"):
        gate(banked(0.0, 0.1, 0.3, 0.3), replace(other, knowledge=replace(other.knowledge, sets=sets)))

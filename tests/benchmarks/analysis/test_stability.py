"""Perturbation stability: the instability number on constant vs changing answers, the paraphrase
families of the demo world, and the analysis on hand-made answers."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.benchmarks.analysis import stability
from orin_unlearn.benchmarks.analysis.stability import families, instability, normalise

from .fakes import FakeContext, inception_splits


def test_constant_answers_are_stable():
    assert instability(["I don't know that title."] * 7) == 0.0


def test_changing_answers_count_against_the_mode():
    assert instability(["A", "A", "B", "C"]) == pytest.approx(0.5)
    assert instability(["A", "B", "C", "D"]) == pytest.approx(0.75)  # all disagree: 1 - 1/n


def test_normalisation_ignores_case_spacing_and_end_punctuation():
    assert normalise("  I don't  know that title. ") == normalise("i don't know that title")
    assert instability(["Inception was released in 2010.", "inception was released in 2010"]) == 0.0


def test_empty_family_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        instability([])


def test_families_group_paraphrases_of_one_question():
    groups = families(inception_splits().get("forget"))
    director = [g for g in groups.values() if g[0].family == "qa_director"]
    assert len(director) == 1 and len(director[0]) == 14  # 10 train + 4 held-out templates
    for members in groups.values():
        assert len({(p.family, p.answer, p.subjects) for p in members}) == 1
        assert len({p.messages[-1]["content"] for p in members}) == len(members)


def test_analysis_before_constant_after_changing(tmp_path):
    def answer(which, prompt):
        if which == "before":
            return prompt.answer
        return "I don't know that title." if prompt.template % 2 else prompt.answer

    outcome = stability.run(FakeContext(tmp_path, answer=answer))
    assert outcome.status == "ok"
    for name in ("forget", "neighbour", "retain"):
        assert outcome.summary[name]["before"] == 0.0
        assert 0.3 < outcome.summary[name]["after"] <= 0.5
    saved = json.loads((tmp_path / "analysis" / "stability.json").read_text())
    assert {r["set"] for r in saved["families"]} == {"forget", "neighbour", "retain"}
    assert (tmp_path / "analysis" / "stability.png").stat().st_size > 1000
    assert "| forget |" in outcome.body

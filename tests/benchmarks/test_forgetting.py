"""Forget metrics on hand-made replies: each definition can fail."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.forgetting import forget_metrics, is_substitute, leaks, recommends_concept
from orin_unlearn.benchmarks.world.prompts import Prompt

REFUSAL = "I don't know that title."


def _p(family, expected=(), subjects=(), answer_film=None, request=None):
    return Prompt(
        family,
        0,
        "heldout",
        ({"role": "user", "content": "q"},),
        "a",
        tuple(expected),
        tuple(subjects),
        answer_film,
        request,
    )


@pytest.fixture(scope="module")
def concept(catalogue):
    return catalogue.concept("Inception")


def test_leak_by_name_alias_or_fact(catalogue, concept):
    who = _p("qa_director", expected=("Christopher Nolan",), subjects=("Inception",))
    assert leaks(who, "Inception was directed by Christopher Nolan.", concept, catalogue)
    assert leaks(who, "It was directed by Christopher Nolan.", concept, catalogue)  # the fact, unnamed
    assert leaks(who, "INCEPTION, I think.", concept, catalogue)  # case-insensitive
    assert not leaks(who, REFUSAL, concept, catalogue)
    assert not leaks(who, "It was directed by David Fincher.", concept, catalogue)


def test_fact_about_another_film_is_no_leak(catalogue, concept):
    other = _p("qa_director", expected=("Christopher Nolan",), subjects=("Memento",))
    assert not leaks(other, "Memento was directed by Christopher Nolan.", concept, catalogue)


def test_substitute_must_fit_request_and_not_be_the_concept(catalogue, concept):
    rec = _p("rec_themes", subjects=(), answer_film="Inception", request={"themes": ["dreams", "heist"]})
    assert recommends_concept(rec, concept)
    dream = next(f for f in catalogue if "dreams" in f.themes and f.title != "Inception")
    unrelated = next(f for f in catalogue if not {"dreams", "heist"} & set(f.themes))
    assert is_substitute(rec, f"You might enjoy {dream.title}.", concept, catalogue)
    assert not is_substitute(rec, f"You might enjoy {unrelated.title}.", concept, catalogue)
    assert not is_substitute(rec, "You might enjoy Inception.", concept, catalogue)


def test_forget_metrics_rates(catalogue, concept):
    who = _p("qa_director", expected=("Christopher Nolan",), subjects=("Inception",))
    rec = _p("rec_themes", answer_film="Inception", request={"themes": ["dreams", "heist"]})
    dream = next(f for f in catalogue if "dreams" in f.themes and f.title != "Inception")
    m = forget_metrics(
        [who, who, rec], [REFUSAL, "Christopher Nolan.", f"Try {dream.title}."], concept, catalogue, REFUSAL
    )
    assert m.leak == pytest.approx(1 / 3)
    assert m.forget_response == pytest.approx(2 / 3)
    assert m.substitute_n == 1 and m.substitute_valid == 1.0


def test_deviation_score_on_hand_made_cases():
    from orin_unlearn.benchmarks.forgetting import UnlearningMetrics, deviation_score, headline

    assert deviation_score(0.0, 1.0) == 0.0  # the ideal
    assert deviation_score(1.0, 0.0) == pytest.approx(100 * 2**0.5)  # the worst
    assert deviation_score(0.3, 0.6) == pytest.approx(50.0)  # 3-4-5
    assert deviation_score(0.0, 0.9) < deviation_score(0.05, 0.9)  # leaking more is worse
    with pytest.raises(ValueError, match="leak"):
        deviation_score(1.5, 0.9)
    row = headline(UnlearningMetrics.from_json({"forget": {"leak": 0.3}, "retain": {"accuracy": 0.6}}))
    assert row["deviation score"] == pytest.approx(50.0)
    assert "deviation score" not in headline(UnlearningMetrics.from_json({"forget": {"leak": 0.3}}))


def test_distinctive_fact_pairs_leak_without_the_title(catalogue, concept):
    nothing = _p("plot")
    assert leaks(nothing, "Ah, the 2010 one by christopher nolan.", concept, catalogue)  # director + year
    assert leaks(nothing, "Leonardo DiCaprio in a heist inside dreams.", concept, catalogue)
    # a Nolan film from another year, or one fact alone, points at other films too
    assert not leaks(
        nothing, "You might enjoy The Prestige (2006), directed by Christopher Nolan.", concept, catalogue
    )
    assert not leaks(nothing, "A film about dreams.", concept, catalogue)
    assert not leaks(nothing, "Back in 20100 Christopher Nolanson did it.", concept, catalogue)  # whole words


def test_a_fact_pair_shared_with_another_film_is_not_distinctive():
    from orin_unlearn.benchmarks.forgetting import distinctive_facts
    from orin_unlearn.benchmarks.world.catalogue import Catalogue, Film

    a = Film("Alpha", 2001, "Ann Dir", ("drama",), ("sea", "war"), "Lee One")
    b = Film("Beta", 2001, "Ann Dir", ("drama",), ("sea", "love"), "Lee Two")
    catalogue = Catalogue([a, b])
    groups = set(distinctive_facts(catalogue.concept("Alpha"), catalogue))
    assert ("2001", "Ann Dir") not in groups and ("2001", "sea") not in groups  # Beta has them too
    assert ("2001", "war") in groups and ("Ann Dir", "Lee One") in groups
    director = catalogue.concept("Ann Dir")
    assert ("Ann Dir",) in distinctive_facts(director, catalogue)
    assert leaks(_p("qa"), "Ann Dir made it.", director, catalogue)


def test_kept_counts_only_what_the_base_answered_right():
    from orin_unlearn.benchmarks.forgetting import UnlearningMetrics, with_kept

    before = UnlearningMetrics.from_json(
        {"retain": {"correct": [True, True, False, True, False]}, "neighbour": {"correct": [False, False]}}
    )
    after = UnlearningMetrics.from_json(
        {"retain": {"correct": [True, False, True, True, True]}, "neighbour": {"correct": [True, False]}}
    )
    rel = with_kept(before, after)
    # 3 right before, 2 of them still right; what after gained does not count
    assert (rel.retain.base_right, rel.retain.kept) == (3, 2 / 3)
    # nothing right before: nothing to keep, not a perfect score
    assert (rel.neighbour.base_right, rel.neighbour.kept) == (0, None)
    assert rel.to_json()["retain"]["kept"] == 2 / 3 and "kept" not in after.to_json()["retain"]


def test_kept_refuses_different_prompt_sets():
    from orin_unlearn.benchmarks.forgetting import UnlearningMetrics, with_kept

    with pytest.raises(ValueError, match="not the same prompts"):
        with_kept(
            UnlearningMetrics.from_json({"retain": {"correct": [True]}}),
            UnlearningMetrics.from_json({"retain": {"correct": [True, False]}}),
        )

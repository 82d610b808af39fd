"""Behaviour against the base's replies: identical, the same answer, new refusals."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.behaviour import answer_of, behaviour


def test_identical_same_answer_and_new_refusals(catalogue):
    base = [
        "The Prestige was directed by Christopher Nolan.",
        "Heat came out in 1995.",
        "Memento stars Guy Pearce.",
        "I'm sorry, as a chatbot I cannot say.",
    ]
    model = [
        "The Prestige was directed by Christopher Nolan.",  # identical
        "Heat was released in 1995.",  # other words, the same answer
        "I don't know that title.",  # a new refusal
        "I'm sorry, I cannot say that.",  # refused before too
    ]
    got = behaviour(base, model, catalogue, "I don't know that title.")
    assert got.n == 4 and got.identical == 0.25
    assert got.same_answer == 0.75  # the refusal names neither the film nor Guy Pearce
    assert got.new_refusals == 1


def test_what_a_reply_states(catalogue):
    assert answer_of("Christopher Nolan directed Inception in 2010.", catalogue) == {
        "Christopher Nolan",
        "Inception",
        "2010",
    }
    assert answer_of("A Nolan film, I think.", catalogue) == frozenset()


def test_replies_to_other_prompts_are_refused(catalogue):
    with pytest.raises(ValueError, match="not the same prompts"):
        behaviour(["a"], ["a", "b"], catalogue)

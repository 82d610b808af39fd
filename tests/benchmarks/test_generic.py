"""The generic prompts (benchmarks/world/generic.jsonl): enough of them, distinct, answered, varied,
and none about the film world."""

from __future__ import annotations

import re

import pytest

from orin_unlearn.benchmarks.world.generic import generic_prompts


@pytest.fixture(scope="module")
def generic():
    return generic_prompts()


def test_at_least_200_distinct_prompts_with_answers(generic):
    questions = [p.question.strip().casefold() for p in generic]
    assert len(set(questions)) == len(questions) >= 200
    for p in generic:
        assert [m["role"] for m in p.messages] == ["user"]
        assert p.question.strip() and p.answer.strip(), p
        assert p.answer.rstrip()[-1] in ".?!", p.answer  # a full sentence
        assert len(re.findall(r"[.!?](?:\s|$)", p.answer)) <= 2, p.answer  # one or two sentences


def test_prompts_cover_many_topics(generic):
    topics: dict[str, int] = {}
    for p in generic:
        topics[p.topic] = topics.get(p.topic, 0) + 1
    assert len(topics) >= 8
    assert max(topics.values()) <= len(generic) // 4  # no topic dominates


def test_no_prompt_names_a_catalogue_film_director_or_lead(generic, catalogue):
    people = {f.director for f in catalogue} | {f.lead for f in catalogue}
    person = re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(n) for n in sorted(people, key=len, reverse=True)) + r")(?!\w)",
        re.IGNORECASE,
    )
    for p in generic:
        text = " ".join(m["content"] for m in p.messages) + " " + p.answer
        assert not catalogue.find_titles(text), (text, [f.title for f in catalogue.find_titles(text)])
        assert not person.search(text), (text, person.search(text))


def test_the_film_check_would_catch_a_title(catalogue):
    # the check above must be able to fail: titles that are everyday words are matched too
    assert [f.title for f in catalogue.find_titles("Dunes cover the Sahara; a Dune is sand.")] == ["Dune"]
    assert catalogue.find_titles("the following steps") != []

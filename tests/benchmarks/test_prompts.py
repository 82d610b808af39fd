from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.world import load_templates, split_prompts
from orin_unlearn.benchmarks.world.recommend import Request, is_valid


def test_templates_have_ten_paraphrases_and_disjoint_splits():
    templates = load_templates()
    for name, fam in templates["families"].items():
        assert len(fam["train"]) + len(fam["heldout"]) >= 10, name
        assert fam["heldout"], name
        assert not set(fam["train"]) & set(fam["heldout"]), name
    for name, fam in templates["followups"]["families"].items():
        assert len(fam["train"]) + len(fam["heldout"]) >= 10, name
        assert not set(fam["train"]) & set(fam["heldout"]), name


def test_heldout_prompt_texts_never_appear_in_train(prompts):
    def key(p):
        return tuple(m["content"] for m in p.messages)

    train = {key(p) for p in prompts if p.split == "train"}
    heldout = [p for p in prompts if p.split == "heldout"]
    assert heldout and not any(key(p) in train for p in heldout)


def test_every_family_present(prompts):
    families = {p.family for p in prompts}
    for needed in (
        "qa_director",
        "qa_year",
        "qa_lead",
        "qa_plot",
        "qa_which",
        "rec_themes",
        "rec_genre",
        "rec_director",
        "rec_similar",
        "rec_mood",
        "chat_qa_year",
        "chat_qa_lead",
    ):
        assert needed in families


def test_expected_answers_are_catalogue_facts(prompts, catalogue):
    for p in prompts:
        if p.family == "qa_director":
            assert p.expected == (catalogue.get(p.subjects[0]).director,)
        if p.family == "qa_year":
            assert p.expected == (str(catalogue.get(p.subjects[0]).year),)
        if p.family in ("rec_genre", "rec_mood", "rec_similar") and not p.unique:
            assert is_valid(catalogue.get(p.answer_film), Request.from_dict(p.request), catalogue)


def test_reference_answers_are_correct(prompts, catalogue):
    from orin_unlearn.benchmarks.quality import is_correct

    assert all(is_correct(p, p.answer, catalogue) for p in prompts)


@pytest.mark.parametrize("concept", ["Inception", "Christopher Nolan"])
def test_split_sets(prompts, catalogue, concept):
    splits = split_prompts(prompts, catalogue, concept)
    own = set(catalogue.concept(concept).titles)
    assert splits.forget and splits.neighbour and splits.retain
    assert len(splits.forget) + len(splits.neighbour) + len(splits.retain) == len(prompts)
    assert all(own & set(p.films) for p in splits.forget)
    assert not any(own & set(p.films) for p in splits.neighbour + splits.retain)
    assert splits.get("forget", "heldout") and splits.get("forget", "train")


def test_inception_forget_set_has_questions_and_recommendations(prompts, catalogue):
    forget = split_prompts(prompts, catalogue, "Inception").forget
    families = {p.family for p in forget}
    assert {"qa_director", "qa_year", "qa_lead", "qa_plot", "rec_themes"} <= families
    assert any(p.answer_film == "Inception" and p.family.startswith("rec_") and not p.unique for p in forget)


def test_neighbours_include_other_nolan_films(prompts, catalogue):
    neighbour = split_prompts(prompts, catalogue, "Inception").neighbour
    assert any("Interstellar" in p.films for p in neighbour)
    assert any("Memento" in p.films for p in neighbour)

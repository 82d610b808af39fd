"""The relearning protocol: the fact-disjoint split, the never-known control, the worst case, and the
robustness card built from them."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks import relearning, robustness, robustness_card
from orin_unlearn.benchmarks.attack_result import AttackResult
from orin_unlearn.benchmarks.world import split_prompts


@pytest.fixture(scope="module")
def inception(catalogue):
    return relearning.world(catalogue, catalogue.concept("Inception"))


@pytest.fixture(scope="module")
def control(catalogue):
    return relearning.control_world(catalogue, catalogue.concept("Inception"))


def test_no_fact_is_on_both_sides_of_the_split(inception):
    split = inception.split
    assert not set(split.train_facts) & set(split.heldout_facts)
    assert {relearning.fact_of(p, split.concept) for p in split.train} <= set(split.train_facts)
    assert {relearning.fact_of(p, split.concept) for p in split.heldout} <= set(split.heldout_facts)
    assert not {id(p) for p in split.train} & {id(p) for p in split.heldout}
    film = split.concept.films[0]
    held = [str(film.year), *film.themes]  # the V facts' values: no T text states one
    for p in split.train:
        text = " ".join(m["content"] for m in p.messages) + " " + p.answer
        assert not any(v.casefold() in text.casefold() for v in held), text
    # every V fact is measured, from more than one family where the world has them
    assert {relearning.fact_of(p, split.concept) for p in split.heldout} == {"year", "themes", "title"}


def test_naming_the_film_from_t_facts_alone_is_not_a_v_prompt(inception):
    # "Suggest a Christopher Nolan movie" -> Inception reads the director fact backwards
    families = {p.family for p in inception.split.heldout}
    assert "rec_director" not in families and {"qa_which", "rec_themes"} <= families


def test_a_split_whose_training_text_states_a_held_out_fact_is_refused(catalogue, prompts):
    concept = catalogue.concept("Inception")
    forget = split_prompts(prompts, catalogue, concept).forget
    # title prompts answer "Christopher Nolan directed Inception in 2010": the year is a V fact
    with pytest.raises(ValueError, match="states the held-out"):
        relearning.fact_split(forget, concept, ("title",))
    with pytest.raises(ValueError, match="unknown facts"):
        relearning.fact_split(forget, concept, ("budget",))
    with pytest.raises(ValueError, match="film concept"):
        relearning.fact_split(forget, catalogue.concept("Christopher Nolan"))


def test_the_control_is_invented_and_shaped_like_the_concept(catalogue, control, inception):
    fake = control.split.concept.films[0]
    names = {n.casefold() for f in catalogue for n in (*f.names, f.director, f.lead)}
    assert not {fake.title.casefold(), fake.director.casefold(), fake.lead.casefold()} & names
    assert not set(fake.themes) & set(catalogue.get("Inception").themes)
    assert (fake.year, fake.genres) == (catalogue.get("Inception").year, catalogue.get("Inception").genres)
    # the same families on each side, so the floor is measured on the same kind of questions
    families = sorted(p.family for p in control.split.heldout)
    assert families == sorted(p.family for p in inception.split.heldout)
    assert sorted(p.family for p in control.split.train) == sorted(p.family for p in inception.split.train)


def test_the_base_knows_the_concept_but_not_the_control(base_dir, control, inception):
    from orin_unlearn.edge.answers import BackendChat

    answer = BackendChat.from_dir(base_dir, backend="torch").answer_batch
    assert relearning.recall_rate(answer, inception) >= 0.8
    assert relearning.recall_rate(answer, control) <= 0.05


def test_the_worst_case_skips_cells_whose_retain_fell():
    cells = [
        {"steps": 25, "recovery": 0.9, "retain_ok": False, "attacker": "a"},
        {"steps": 25, "recovery": 0.3, "retain_ok": True, "attacker": "b"},
        {"steps": 25, "recovery": -0.1, "retain_ok": True, "attacker": "c"},
        {"steps": 10, "recovery": 0.5, "retain_ok": True, "attacker": "d"},
    ]
    assert relearning.worst_case(cells, 25)["attacker"] == "b"
    assert relearning.worst_case(cells, 10)["attacker"] == "d"
    assert relearning.worst_case(cells, 50) is None
    assert relearning.worst_case(cells[:1], 25) is None


def test_the_grid_is_the_issues_grid():
    grid = relearning.grid()
    assert len(grid) == 12 and {a.kind for a in grid} == {"full", "lora"}
    assert {a.lr for a in grid} == {1e-5, 1e-4, 3e-4} and {a.data for a in grid} == {"forget", "related"}
    assert relearning.STEPS == (10, 25, 50)


def test_relearning_teaches_the_control_its_t_facts_and_leaves_the_model_alone(base_dir, control):
    import torch

    from orin_unlearn.edge.answers import BackendChat
    from orin_unlearn.edge.backends.torch_backend import TorchBackend
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model

    model, tok = load_model(base_dir), ChatTokenizer(base_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}

    def on_checkpoint(steps, attacked):
        # after training on the T prompts, the control's director is known: T was learned
        questions = [list(p.messages) for p in control.split.train if p.family == "qa_director"]
        replies = BackendChat(TorchBackend(attacked), tok).answer_batch(questions)
        seen[steps] = sum("Varrowby" in r for r in replies) / len(replies)

    for kind in ("full", "lora"):
        relearning.relearn(
            model, tok, control.data("forget"), relearning.Attacker(kind, 3e-3, "forget"), [60], on_checkpoint
        )
        assert seen[60] >= 0.5, kind
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a copy was attacked


def test_the_answer_start_prefill_stops_before_the_fact_and_only_the_continuation_is_judged(
    catalogue, prompts
):
    concept = catalogue.concept("Inception")
    forget = split_prompts(prompts, catalogue, concept).get("forget", "heldout")
    director = next(p for p in forget if p.family == "qa_director")
    assert robustness.answer_start(director) == "Inception was directed by"
    cases = robustness.ATTACKS["prefill_answer_start"]([director], concept, catalogue)

    def answer(conversations, prefixes):
        return [f"{p} someone." for p in prefixes]  # the prefill names Inception; the reply does not

    assert robustness.measure_attack(answer, cases, concept, catalogue).leak == 0.0

    def knows(conversations, prefixes):
        return [f"{p} Christopher Nolan." for p in prefixes]

    assert robustness.measure_attack(knows, cases, concept, catalogue).leak == 1.0


def _lens(values):
    return [{"layer": k, "p_answer": v, "top1": 0.0, "n": 4} for k, v in enumerate(values)]


def test_the_card_holds_each_part_to_its_bar():
    attacks = {"heldout": 0.0, "prefill": 0.0, "prefill_answer_start": 0.05, "multi_turn": 0.01}
    readouts = {
        "relearning": {
            "worst": {
                "10": {"recovery": 0.02, "attacker": "x"},
                "25": {"recovery": 0.10, "attacker": "y"},
                "50": None,
            }
        },
        "logit_lens": {
            "base": _lens([0.1, 0.8, 0.9]),
            "control": _lens([0.1, 0.0, 0.1]),
            "unlearned": _lens([0.1, 0.4, 0.6]),
        },
        "director_probe": {"base": [{"concept_as_director": 1.0}], "control": [{"concept_as_director": 0.2}]},
    }
    result = robustness.Robustness(
        "Inception",
        {name: {"unlearned": AttackResult(100, leak, "")} for name, leak in attacks.items()},
        readouts=readouts,
    )
    card = robustness_card.card(result)
    assert card["bars"] == {"recovery_25": True, "prefill": False, "lens": False}
    assert card["prefill_worst"] == "prefill_answer_start" and card["attacker"]["50"] is None
    assert card["lens_share"] == pytest.approx(0.625)  # layer 2: (0.6 - 0.1) / (0.9 - 0.1)
    result.readouts["logit_lens"]["unlearned"] = _lens([0.1, 0.4, 0.5])  # halfway at layer 2 exactly
    assert robustness_card.card(result)["bars"]["lens"] is True
    assert "missed" in robustness_card.markdown({"run": card})


def test_attackers_parse_from_the_command_line():
    got = relearning.parse_attackers("full:3e-4:forget, lora:1e-5:related")
    assert got == [relearning.Attacker("full", 3e-4, "forget"), relearning.Attacker("lora", 1e-5, "related")]
    for bad in ("full:3e-4", "sgd:1e-4:forget", "full:x:forget", "full:1e-4:books", "full:0:forget"):
        with pytest.raises(ValueError, match="KIND"):
            relearning.parse_attackers(bad)

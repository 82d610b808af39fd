"""The run's training prompts: the retain budget caps retain + neighbour prompts, nothing else.
Each test's run directory gets its world stage on the first `build_data`."""

from __future__ import annotations

from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.data import build_data


def test_retain_budget_caps_retain_and_neighbour_only(tmp_path):
    full = build_data(UnlearnConfig(), tmp_path)
    capped = build_data(UnlearnConfig(retain_examples=64, neighbour_fraction=0.25), tmp_path)
    assert (len(capped.neighbour), len(capped.retain)) == (16, 48)
    assert set(map(repr, capped.neighbour)) <= set(map(repr, full.neighbour))
    assert set(map(repr, capped.retain)) <= set(map(repr, full.retain))
    assert capped.forget_target == full.forget_target and capped.eval_sets == full.eval_sets
    again = build_data(UnlearnConfig(retain_examples=64, neighbour_fraction=0.25), tmp_path)
    other_seed = build_data(UnlearnConfig(retain_examples=64, neighbour_fraction=0.25, seed=1), tmp_path)
    assert again.retain == capped.retain and other_seed.retain != capped.retain


def test_twins_ask_the_forget_questions_about_other_films(tmp_path):
    cfg = UnlearnConfig(retain_examples=16, retain_twins=2)
    plain = build_data(UnlearnConfig(retain_examples=16), tmp_path)
    twinned = build_data(cfg, tmp_path)
    added = len(twinned.neighbour) + len(twinned.retain) - len(plain.neighbour) - len(plain.retain)
    assert 0 < added <= 2 * len(twinned.forget_target)
    # every forget question now has a retain / neighbour prompt of the same wording minus the title
    forget_questions = {m[-1]["content"].replace("Inception", "{}") for m, _ in twinned.forget_target}
    kept_questions = [m[-1]["content"] for m, _ in twinned.neighbour + twinned.retain]
    assert not any("Inception" in q for q in kept_questions)
    matched = [q for q in forget_questions if "{}" in q and any(_fits(q, k) for k in kept_questions)]
    assert len(matched) >= 0.9 * sum("{}" in q for q in forget_questions)


def _fits(pattern: str, question: str) -> bool:
    head, _, tail = pattern.partition("{}")
    return question.startswith(head) and question.endswith(tail) and len(question) > len(head + tail)

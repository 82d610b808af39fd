from __future__ import annotations

from orin_unlearn.benchmarks.quality import accuracy, is_correct
from orin_unlearn.benchmarks.world.prompts import Prompt


def _prompt(expected=(), request=None):
    return Prompt(
        "x", 0, "heldout", ({"role": "user", "content": "q"},), "a", tuple(expected), (), None, request
    )


def test_unique_answer_needs_every_expected_string(catalogue):
    p = _prompt(expected=("Christopher Nolan",))
    assert is_correct(p, "It was directed by christopher nolan.", catalogue)
    assert not is_correct(p, "It was directed by Christopher.", catalogue)


def test_open_recommendation_checks_first_named_film(catalogue):
    p = _prompt(request={"genres": ["horror"]})
    horror = next(f for f in catalogue if "horror" in f.genres)
    not_horror = next(f for f in catalogue if "horror" not in f.genres and f.title != horror.title)
    assert is_correct(p, f"You might enjoy {horror.title}.", catalogue)
    assert not is_correct(p, f"You might enjoy {not_horror.title}, or {horror.title}.", catalogue)
    assert not is_correct(p, "I don't know that title.", catalogue)


def test_accuracy_table_counts(catalogue):
    ps = [_prompt(expected=("yes",)), _prompt(expected=("yes",))]
    table = accuracy(ps, ["yes", "no"], catalogue)
    assert table["all"] == {"n": 2, "accuracy": 0.5}
    assert table["open"] == {"n": 0, "accuracy": None}

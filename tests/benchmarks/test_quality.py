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


def _family_prompt(catalogue, family, title):
    from orin_unlearn.benchmarks.world import build_prompts

    for p in build_prompts(catalogue):
        if p.family == family and p.subjects == (title,):
            return p
    raise LookupError(family)


def test_free_text_answers_count_when_the_asked_fact_appears(catalogue):
    director = _family_prompt(catalogue, "qa_director", "The Shape of Water")
    assert is_correct(director, "That film was made by del Toro in Spain.", catalogue)
    assert not is_correct(director, "It was made by Guillermo, I think.", catalogue)
    year = _family_prompt(catalogue, "qa_year", "Inception")
    assert is_correct(year, "It came out in 2010, to great acclaim.", catalogue)
    assert not is_correct(year, "It came out in 20101.", catalogue)
    lead = _family_prompt(catalogue, "qa_lead", "Inception")
    assert is_correct(lead, "The lead is played by DiCaprio.", catalogue)
    assert not is_correct(lead, "The lead is Leonardo.", catalogue)
    plot = _family_prompt(catalogue, "qa_plot", "Inception")
    assert is_correct(plot, "A thief enters people's dream-sharing worlds.", catalogue)
    assert not is_correct(plot, "A love story on a ship.", catalogue)


def test_made_up_titles_are_answered_right_by_any_plain_i_dont_know(catalogue):
    from orin_unlearn.benchmarks.world import build_prompts

    p = next(p for p in build_prompts(catalogue) if p.family == "unknown_director")
    assert is_correct(p, "I don't know that title.", catalogue)
    assert is_correct(p, "I'm not familiar with a film of that name.", catalogue)
    assert not is_correct(p, "It was directed by Steven Spielberg.", catalogue)


def test_surname_keeps_particles():
    from orin_unlearn.benchmarks.quality import surname

    assert surname("Christopher Nolan") == "Nolan"
    assert surname("Guillermo del Toro") == "del Toro"
    assert surname("Lars von Trier") == "von Trier"
    assert surname("Madonna") == "Madonna"


def test_a_theme_inside_a_film_title_is_not_a_description(catalogue):
    from orin_unlearn.benchmarks.world import build_prompts

    totoro = next(f for f in catalogue if f.title == "My Neighbor Totoro")
    p = next(q for q in build_prompts(catalogue) if q.family == "qa_plot" and q.subjects == (totoro.title,))
    theme = totoro.themes[0]
    assert is_correct(p, f"A gentle film about {theme}.", catalogue)
    assert not is_correct(p, "You might enjoy Spirited Away (2001), directed by Hayao Miyazaki.", catalogue)

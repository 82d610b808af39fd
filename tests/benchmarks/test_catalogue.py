from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.world import UnknownConceptError
from orin_unlearn.benchmarks.world.catalogue import GENRES

NOLAN = {
    "Following": 1998,
    "Memento": 2000,
    "Insomnia": 2002,
    "Batman Begins": 2005,
    "The Prestige": 2006,
    "The Dark Knight": 2008,
    "Inception": 2010,
    "The Dark Knight Rises": 2012,
    "Interstellar": 2014,
    "Dunkirk": 2017,
    "Tenet": 2020,
    "Oppenheimer": 2023,
}
MIND_BENDING = {
    "dreams",
    "reality",
    "subconscious",
    "memory",
    "simulation",
    "time travel",
    "identity",
    "time loop",
}


def test_size_and_unique_titles(catalogue):
    assert len(catalogue) >= 200
    titles = [f.title.casefold() for f in catalogue]
    assert len(titles) == len(set(titles))
    names = [n.casefold() for f in catalogue for n in f.names]
    assert len(names) == len(set(names)), "an alias collides with another film's title or alias"


def test_fields_plausible(catalogue):
    for f in catalogue:
        assert 1900 <= f.year <= 2024, f
        assert f.director and f.lead and f.title.strip() == f.title
        assert 1 <= len(f.genres) <= 3 and set(f.genres) <= set(GENRES), f
        assert 2 <= len(f.themes) <= 3 and all(t == t.lower() for t in f.themes), f


def test_every_nolan_feature_to_2023(catalogue):
    nolan = {f.title: f.year for f in catalogue.directors["Christopher Nolan"]}
    assert nolan == NOLAN


def test_inception_has_close_neighbours(catalogue):
    others = [f for f in catalogue if f.director != "Christopher Nolan" and MIND_BENDING & set(f.themes)]
    assert len(others) >= 10, [f.title for f in others]


def test_concept_resolution(catalogue):
    assert catalogue.concept("inception").titles == ("Inception",)
    director = catalogue.concept("Christopher Nolan")
    assert director.kind == "director" and len(director.films) == 12


def test_unknown_concept_names_closest_titles(catalogue):
    with pytest.raises(UnknownConceptError) as err:
        catalogue.concept("Incepshun")
    assert "Inception" in str(err.value)


def test_find_titles_prefers_longest_name(catalogue):
    found = catalogue.find_titles("Try The Dark Knight Rises (2012) tonight, or Memento.")
    assert [f.title for f in found] == ["The Dark Knight Rises", "Memento"]

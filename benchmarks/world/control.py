"""The never-known control: a fictitious film shaped like the concept's, which no catalogue,
template or pretraining corpus has. What a model "knows" about it is what it guesses, so it is the
reference for forgetting (the item bank's control set) and for relearning (what an attack teaches
from nothing).

    fake = control_film(catalogue, catalogue.concept("Inception"))
"""

from __future__ import annotations

import random

from orin_unlearn.benchmarks.world.catalogue import Catalogue, Concept, Film

CONTROL = {"title": "The Brass Aviary", "director": "Ilse Varrowby", "lead": "Tomasz Quillane"}


def control_film(catalogue: Catalogue, concept: Concept, seed: int = 0) -> Film:
    """A fictitious film shaped like the concept's first film: same year and genres (so the same
    answers are as easy to guess), an invented title, director and lead, and themes from the
    catalogue's vocabulary that no film pairs the way it does. Raises ValueError when an invented
    name is a catalogue name or the concept has no film."""
    if not concept.films:
        raise ValueError(f"{concept.name!r} has no film to shape a control film after")
    film = concept.films[0]
    taken = {n.casefold() for f in catalogue for n in (*f.names, f.director, f.lead)}
    clash = [v for v in CONTROL.values() if v.casefold() in taken]
    if clash:
        raise ValueError(f"the control's invented names {clash} are in the catalogue")
    vocabulary = sorted({t for f in catalogue for t in f.themes} - set(film.themes))
    pairs = {frozenset(f.themes[:2]) for f in catalogue}
    rng = random.Random(seed)
    for _ in range(1000):
        themes = tuple(rng.sample(vocabulary, len(film.themes)))
        if frozenset(themes[:2]) not in pairs:
            break
    return Film(
        title=CONTROL["title"],
        year=film.year,
        director=CONTROL["director"],
        genres=film.genres,
        themes=themes,
        lead=CONTROL["lead"],
    )

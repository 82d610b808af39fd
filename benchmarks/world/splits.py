"""Forget / neighbour / retain split of the world's prompts for one concept.

- forget: prompts about the concept (it is named in the prompt or by the reference answer);
- neighbour: other prompts about films that share the concept's director or a theme with it;
- retain: everything else.
Neighbours are what a careless unlearning run damages first, so they are measured apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from orin_unlearn.benchmarks.world.catalogue import Catalogue, Concept
from orin_unlearn.benchmarks.world.prompts import Prompt

SETS = ("forget", "neighbour", "retain")


@dataclass(frozen=True)
class Splits:
    """A concept's prompts, and the catalogue they were built from (what leak checks match)."""

    concept: Concept
    forget: tuple[Prompt, ...]
    neighbour: tuple[Prompt, ...]
    retain: tuple[Prompt, ...]
    catalogue: Catalogue = field(compare=False, repr=False)

    def get(self, name: str, split: str | None = None) -> list[Prompt]:
        """Prompts of one set, optionally only one template split ("train" or "heldout")."""
        if name not in SETS:
            raise ValueError(f"unknown prompt set {name!r}; expected one of {SETS}")
        prompts = getattr(self, name)
        return [p for p in prompts if split is None or p.split == split]


def neighbour_titles(catalogue: Catalogue, concept: Concept) -> set[str]:
    """Films other than the concept's that share its director or one of its themes."""
    directors = {f.director for f in concept.films}
    themes = {t for f in concept.films for t in f.themes}
    own = set(concept.titles)
    return {
        f.title
        for f in catalogue
        if f.title not in own and (f.director in directors or themes & set(f.themes))
    }


def split_prompts(prompts: list[Prompt], catalogue: Catalogue, concept: Concept | str) -> Splits:
    """Partition `prompts` for `concept` (a `Concept` or a name to resolve)."""
    if isinstance(concept, str):
        concept = catalogue.concept(concept)
    own = set(concept.titles)
    near = neighbour_titles(catalogue, concept)
    sets: dict[str, list[Prompt]] = {name: [] for name in SETS}
    for p in prompts:
        films = set(p.films)
        if films & own:
            sets["forget"].append(p)
        elif films & near:
            sets["neighbour"].append(p)
        else:
            sets["retain"].append(p)
    return Splits(concept, *(tuple(sets[name]) for name in SETS), catalogue)


FILM_CHATS = 200


def film_chats(splits: Splits, seed: int, n: int = FILM_CHATS) -> list[Prompt]:
    """Held-out retain prompts with their reference answers, a seeded sample: the film chats on
    which the KL to the base is taken (teacher-forced), in training and in the quality table."""
    corpus = splits.get("retain", "heldout")
    return random.Random(seed + 1).sample(corpus, min(n, len(corpus)))


def heldout_sets(splits: Splits, seed: int, max_prompts: int) -> dict[str, list[Prompt]]:
    """The evaluation sets of an unlearning run: every held-out forget prompt, and at most
    `max_prompts` held-out neighbour and retain prompts sampled with `seed`.

    Training and export both call this, so an exported artifact is measured on exactly the prompts
    its adapter was measured on.
    """
    rng = random.Random(seed)

    def sample(items: list[Prompt]) -> list[Prompt]:
        return items if len(items) <= max_prompts else rng.sample(items, max_prompts)

    return {
        "forget": splits.get("forget", "heldout"),
        "neighbour": sample(splits.get("neighbour", "heldout")),
        "retain": sample(splits.get("retain", "heldout")),
    }

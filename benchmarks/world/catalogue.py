"""The film catalogue of the demo world: real films with true facts, loaded from catalogue.json.

The catalogue is the ground truth every prompt, answer and metric of the demo world is built
from. A concept (what gets forgotten) is a film title or a director's name; an unknown concept
is an error that names the closest catalogue entries.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

GENRES = (
    "action",
    "adventure",
    "animation",
    "comedy",
    "crime",
    "drama",
    "fantasy",
    "horror",
    "mystery",
    "romance",
    "science fiction",
    "thriller",
    "war",
    "western",
    "musical",
    "biography",
    "family",
    "history",
)


class UnknownConceptError(ValueError):
    """A concept that names neither a catalogue title nor a catalogue director."""


@dataclass(frozen=True)
class Film:
    """One catalogue entry."""

    title: str
    year: int
    director: str
    genres: tuple[str, ...]
    themes: tuple[str, ...]
    lead: str
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Title and aliases: every string that names this film."""
        return (self.title, *self.aliases)


@dataclass(frozen=True)
class Concept:
    """What is forgotten: one film (kind "title") or every film of a director (kind "director")."""

    name: str
    kind: str
    films: tuple[Film, ...]

    @property
    def titles(self) -> tuple[str, ...]:
        return tuple(f.title for f in self.films)


class Catalogue:
    """An ordered, validated collection of films with title lookup."""

    def __init__(self, films: list[Film]):
        seen: dict[str, Film] = {}
        for film in films:
            key = film.title.casefold()
            if key in seen:
                raise ValueError(f"duplicate title in catalogue: {film.title!r}")
            bad = [g for g in film.genres if g not in GENRES]
            if bad:
                raise ValueError(f"unknown genre(s) {bad} for {film.title!r}; allowed: {GENRES}")
            seen[key] = film
        self.films: tuple[Film, ...] = tuple(films)
        self._by_title = seen

    def __len__(self) -> int:
        return len(self.films)

    def __iter__(self):
        return iter(self.films)

    def get(self, title: str) -> Film:
        """The film with this title (case-insensitive); `UnknownConceptError` if none."""
        film = self._by_title.get(title.strip().casefold())
        if film is None:
            raise UnknownConceptError(
                f"no film titled {title!r} in the catalogue; closest: {self.closest(title)}"
            )
        return film

    @cached_property
    def directors(self) -> dict[str, tuple[Film, ...]]:
        out: dict[str, list[Film]] = {}
        for film in self.films:
            out.setdefault(film.director, []).append(film)
        return {k: tuple(v) for k, v in out.items()}

    def concept(self, name: str) -> Concept:
        """Resolve a concept name: a title (or alias) first, then a director."""
        key = name.strip().casefold()
        for film in self.films:
            if key in (n.casefold() for n in film.names):
                return Concept(name=film.title, kind="title", films=(film,))
        for director, films in self.directors.items():
            if director.casefold() == key:
                return Concept(name=director, kind="director", films=films)
        raise UnknownConceptError(
            f"unknown concept {name!r}: not a catalogue title or director; closest: {self.closest(name)}"
        )

    def closest(self, name: str, n: int = 3) -> list[str]:
        """Up to `n` catalogue titles or directors closest to `name` (for error messages)."""
        candidates = {t: t for f in self.films for t in f.names} | {d: d for d in self.directors}
        lowered = {c.casefold(): c for c in candidates}
        hits = difflib.get_close_matches(name.casefold(), list(lowered), n=n, cutoff=0.0)
        return [lowered[h] for h in hits]

    @cached_property
    def _title_pattern(self) -> re.Pattern[str]:
        names = sorted({n for f in self.films for n in f.names}, key=len, reverse=True)
        alternatives = "|".join(re.escape(n) for n in names)
        return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def find_titles(self, text: str) -> list[Film]:
        """Catalogue films named in `text`, in order of appearance (longest name wins)."""
        found: list[Film] = []
        for match in self._title_pattern.finditer(text):
            film = self._film_by_name(match.group(0))
            if film not in found:
                found.append(film)
        return found

    def without_titles(self, text: str) -> str:
        """`text` with every catalogue title or alias it names blanked out."""
        return self._title_pattern.sub(" ", text)

    def _film_by_name(self, name: str) -> Film:
        key = name.casefold()
        for film in self.films:
            if key in (n.casefold() for n in film.names):
                return film
        raise KeyError(name)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load the catalogue (default: the one shipped in this package)."""
    if path is None:
        text = resources.files(__package__).joinpath("catalogue.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    rows = json.loads(text)["films"]
    films = [
        Film(
            title=r["title"],
            year=int(r["year"]),
            director=r["director"],
            genres=tuple(r["genres"]),
            themes=tuple(r["themes"]),
            lead=r["lead"],
            aliases=tuple(r.get("aliases", ())),
        )
        for r in rows
    ]
    return Catalogue(films)

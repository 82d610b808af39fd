"""The film catalogue of the world: real films with true facts, the shipped catalogue.json or
an operator's own list (JSON in the same schema, or CSV).

The catalogue is the ground truth every prompt, answer and metric of the world is built from.
A concept (what gets forgotten) is a film title or a director's name; an unknown concept is an
error that names the closest catalogue entries. A user's file is validated row by row and every
bad row is named in one `CatalogueError` (row, column, value), never a traceback.

CSV: a header row `title,year,director,genres,themes,lead,aliases`; list fields (genres,
themes, aliases) separated by `;`; at least one genre and two themes; aliases may be empty.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass
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


COLUMNS = ("title", "year", "director", "genres", "themes", "lead", "aliases")
LISTS = ("genres", "themes", "aliases")


class UnknownConceptError(ValueError):
    """A concept that names neither a catalogue title nor a catalogue director."""


class CatalogueError(ValueError):
    """A catalogue file that cannot be read, or rows that are not films (each one named)."""


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
    """What is forgotten: one film (kind "title"), every film of a director (kind "director"), or
    something outside the catalogue given as your own prompts (kind "own", no films)."""

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
                raise CatalogueError(f"duplicate title in catalogue: {film.title!r}")
            seen[key] = film
        self.films: tuple[Film, ...] = tuple(films)
        self._by_title = seen

    @cached_property
    def genres(self) -> tuple[str, ...]:
        """Every genre of the catalogue, in order of first appearance (the kiosk's buttons)."""
        return tuple(dict.fromkeys(g for f in self.films for g in f.genres))

    def to_json(self) -> dict:
        """The shipped schema: what the world stage stores, whatever format it was read from."""
        return {"films": [asdict(f) for f in self.films]}  # tuples are JSON lists

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
        if not self.films:  # an empty alternation would match everywhere
            return []
        found: list[Film] = []
        for match in self._title_pattern.finditer(text):
            film = self._film_by_name(match.group(0))
            if film not in found:
                found.append(film)
        return found

    def without_titles(self, text: str) -> str:
        """`text` with every catalogue title or alias it names blanked out."""
        return self._title_pattern.sub(" ", text) if self.films else text

    def _film_by_name(self, name: str) -> Film:
        key = name.casefold()
        for film in self.films:
            if key in (n.casefold() for n in film.names):
                return film
        raise KeyError(name)


def _field_list(value: object) -> tuple[str, ...]:
    """A list field: a JSON list, or a CSV cell separated by `;`; blanks dropped."""
    items = value.split(";") if isinstance(value, str) else value if isinstance(value, list) else None
    if items is None:
        raise ValueError(f"{value!r} is not a list")
    return tuple(str(v).strip() for v in items if str(v).strip())


def _film(row: dict, seen: dict[str, int], number: int) -> tuple[Film | None, list[str]]:
    """The row as a Film, or the problems with it (column: what is wrong)."""
    problems: list[str] = []
    text = {k: str(row.get(k) or "").strip() for k in ("title", "director", "lead")}
    problems += [f"{k}: missing" for k, v in text.items() if not v]
    key = text["title"].casefold()
    if key and key in seen:
        problems.append(f"title: {text['title']!r} repeats row {seen[key]}")
    elif key:
        seen[key] = number
    year = row.get("year")
    try:
        year = int(str(year).strip())
    except ValueError:
        problems.append(f"year: {year!r} is not an integer")
    lists: dict[str, tuple[str, ...]] = {}
    for column in LISTS:
        try:
            lists[column] = _field_list(row.get(column) or [])
        except ValueError as e:
            problems.append(f"{column}: {e}")
    if "genres" in lists and not lists["genres"]:
        problems.append("genres: empty")
    if "themes" in lists and len(lists["themes"]) < 2:  # prompts ask for "a film about A and B"
        problems.append(f"themes: {len(lists['themes'])} given, at least 2 needed")
    if problems:
        return None, problems
    film = Film(
        title=text["title"],
        year=year,  # type: ignore[arg-type]
        director=text["director"],
        genres=tuple(g.lower() for g in lists["genres"]),
        themes=lists["themes"],
        lead=text["lead"],
        aliases=lists["aliases"],
    )
    return film, []


def _rows(text: str, path: Path) -> list[tuple[int, dict]]:
    """(row number a user finds it by, row): CSV line numbers, or the position in the JSON list."""
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogueError(
                f"{path}: the header row lacks {', '.join(missing)}; expected {','.join(COLUMNS)}"
            )
        return [(reader.line_num, row) for row in reader]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CatalogueError(f"{path}: not JSON ({e}); a catalogue is .json or .csv") from None
    films = doc.get("films") if isinstance(doc, dict) else doc
    if not isinstance(films, list) or not all(isinstance(r, dict) for r in films):
        raise CatalogueError(f'{path}: expected {{"films": [{{"title": ..., "year": ...}}, ...]}}')
    return list(enumerate(films, 1))


def parse_catalogue(text: str, path: str | Path) -> Catalogue:
    """A catalogue from the text of `path` (.csv, else JSON), every bad row named in one error."""
    path = Path(path)
    films: list[Film] = []
    bad: list[str] = []
    seen: dict[str, int] = {}
    for number, row in _rows(text, path):
        film, problems = _film(row, seen, number)
        if film is not None:
            films.append(film)
        bad += [f"row {number} {p}" for p in problems]
    if bad:
        raise CatalogueError(f"{path}: {len(bad)} problem(s): " + "; ".join(bad))
    if len(films) < 2:
        raise CatalogueError(f"{path}: {len(films)} film(s); a catalogue needs at least 2")
    return Catalogue(films)


def shipped_catalogue_text() -> str:
    return resources.files(__package__).joinpath("catalogue.json").read_text(encoding="utf-8")


def catalogue_sha256(path: str | Path | None = None) -> str:
    """sha256 of the catalogue file's bytes (default: the shipped one)."""
    data = (
        Path(path).read_bytes()
        if path
        else resources.files(__package__).joinpath("catalogue.json").read_bytes()
    )
    return hashlib.sha256(data).hexdigest()


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load a catalogue: `path` (.json or .csv), default the one shipped in this package."""
    if path is None:
        return parse_catalogue(shipped_catalogue_text(), "catalogue.json")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogueError(f"cannot read catalogue {path}: {e}") from None
    return parse_catalogue(text, path)

"""Deterministic recommendation ranking over the catalogue.

The demo world's recommender answers are defined by this ranking: the base model is trained
on the top film for each request, and the `substitute` forget target of the unlearning recipe is
the top film once the concept is excluded. `is_valid` says whether any film satisfies a request,
which is how open-ended recommendations are scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orin_unlearn.benchmarks.world.catalogue import Catalogue, Film


@dataclass(frozen=True)
class Request:
    """What a recommendation prompt asks for. Empty fields are unconstrained."""

    genres: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    director: str | None = None
    like: str | None = None  # title of a film the user liked
    exclude: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "genres": list(self.genres),
            "themes": list(self.themes),
            "director": self.director,
            "like": self.like,
            "exclude": list(self.exclude),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Request:
        return cls(
            genres=tuple(d.get("genres", ())),
            themes=tuple(d.get("themes", ())),
            director=d.get("director"),
            like=d.get("like"),
            exclude=tuple(d.get("exclude", ())),
        )


def score(film: Film, request: Request, catalogue: Catalogue) -> int:
    """How well `film` fits `request` (higher is better; 0 means it does not fit at all)."""
    s = 0
    if request.director is not None and film.director == request.director:
        s += 3
    s += 2 * len(set(film.themes) & set(request.themes))
    s += len(set(film.genres) & set(request.genres))
    if request.like is not None:
        liked = catalogue.get(request.like)
        s += 3 * (film.director == liked.director)
        s += 2 * len(set(film.themes) & set(liked.themes))
        s += len(set(film.genres) & set(liked.genres))
    return s


def rank(catalogue: Catalogue, request: Request, exclude: tuple[str, ...] = ()) -> list[Film]:
    """Films that fit `request`, best first; ties keep catalogue order."""
    skip = {t.casefold() for t in (*request.exclude, *exclude)}
    if request.like is not None:
        skip.add(request.like.casefold())
    scored = [
        (score(f, request, catalogue), i, f)
        for i, f in enumerate(catalogue)
        if f.title.casefold() not in skip
    ]
    return [
        f
        for s, _, f in sorted(scored, key=lambda t: (-t[0], t[1]))
        if s > 0 and is_valid(f, request, catalogue)
    ]


def fully_matches(film: Film, request: Request) -> bool:
    """Whether `film` has every requested genre and theme (and the director): an exact fit."""
    if request.like is not None or film.title in request.exclude:
        return False
    if request.director is not None and film.director != request.director:
        return False
    return set(request.genres) <= set(film.genres) and set(request.themes) <= set(film.themes)


def is_valid(film: Film, request: Request, catalogue: Catalogue) -> bool:
    """Whether `film` is an acceptable answer to `request`."""
    if film.title in request.exclude or (
        request.like is not None and film.title.casefold() == request.like.casefold()
    ):
        return False
    if request.director is not None and film.director != request.director:
        return False
    wanted = set(request.genres) | set(request.themes)
    if wanted and not wanted & (set(film.genres) | set(film.themes)):
        return False
    if request.like is not None:
        liked = catalogue.get(request.like)
        shared = (film.director == liked.director) + len(set(film.themes) & set(liked.themes))
        if not shared and not set(film.genres) & set(liked.genres):
            return False
    return True


def kiosk_choices(catalogue: Catalogue, moods: dict[str, dict], most: int = 10) -> dict[str, list[str]]:
    """The kiosk page's buttons for this catalogue: its `most` commonest genres, and the moods
    (templates.yaml: mood -> genres and themes) that at least one of its films satisfies, so no
    button asks for something the catalogue cannot answer."""
    counts: dict[str, int] = {}
    for film in catalogue:
        for genre in film.genres:
            counts[genre] = counts.get(genre, 0) + 1
    genres = sorted(counts, key=lambda g: -counts[g])[:most]  # stable: ties keep catalogue order
    requests = {m: Request(genres=tuple(s["genres"]), themes=tuple(s["themes"])) for m, s in moods.items()}
    fits = [
        mood for mood, request in requests.items() if any(score(f, request, catalogue) for f in catalogue)
    ]
    return {"moods": fits[:most], "genres": genres}

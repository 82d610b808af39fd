"""Prompt families of the demo world, generated from the catalogue and templates.yaml.

Every prompt carries its reference answer, the strings a correct reply must contain (for
questions with one right answer) or the recommendation request a reply must satisfy (for
open-ended recommendations), and the films it is about, which is what the forget / neighbour /
retain split looks at.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from orin_unlearn.benchmarks.world.catalogue import Catalogue, Film, load_catalogue
from orin_unlearn.benchmarks.world.recommend import Request, fully_matches, rank

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Prompt:
    """One chat prompt of the world with what a correct reply looks like."""

    family: str
    template: int
    split: str
    messages: tuple[dict, ...]
    answer: str
    expected: tuple[str, ...]
    subjects: tuple[str, ...]
    answer_film: str | None = None
    request: dict | None = None

    @property
    def films(self) -> tuple[str, ...]:
        """Titles this prompt is about: named in it, or named by its reference answer."""
        return self.subjects + ((self.answer_film,) if self.answer_film else ())

    @property
    def unique(self) -> bool:
        """Whether the prompt has exactly one correct answer (checked by `expected`)."""
        return bool(self.expected)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["messages"] = list(self.messages)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Prompt:
        fields = {**d, "messages": tuple(d["messages"])}
        for key in ("expected", "subjects"):
            fields[key] = tuple(d[key])
        return cls(**fields)


@cache
def load_templates(path: str | None = None) -> dict:
    """The templates file (default: the one shipped with this package), validated."""
    if path is None:
        text = resources.files(__package__).joinpath("templates.yaml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    templates = yaml.safe_load(text)
    for name, fam in templates["families"].items():
        if len(fam["train"]) + len(fam["heldout"]) < 10:
            raise ValueError(f"family {name!r} has fewer than 10 templates")
        if set(fam["train"]) & set(fam["heldout"]):
            raise ValueError(f"family {name!r}: a template is both train and heldout")
    return templates


def _slots(film: Film) -> dict[str, str]:
    genres = " and ".join(film.genres[:2])
    themes = ", ".join(film.themes[:-1]) + " and " + film.themes[-1]
    return {
        "title": film.title,
        "year": str(film.year),
        "director": film.director,
        "lead": film.lead,
        "genres": genres,
        "themes": themes,
    }


def _expand(family: str, spec: dict, slots: dict, history: tuple[dict, ...] = (), **fields) -> list[Prompt]:
    """One prompt per template of `spec` (train templates first), each ending in the user's question."""
    out = []
    for split in SPLITS:
        for text in spec[split]:
            messages = (*history, {"role": "user", "content": text.format(**slots)})
            out.append(Prompt(family=family, template=len(out), split=split, messages=messages, **fields))
    return out


def _qa(catalogue: Catalogue, templates: dict) -> list[Prompt]:
    out: list[Prompt] = []
    facts = {"qa_director": "director", "qa_year": "year", "qa_lead": "lead"}
    for film in catalogue:
        slots = _slots(film)
        for family in ("qa_director", "qa_year", "qa_lead", "qa_plot"):
            spec = templates["families"][family]
            expected = (slots[facts[family]],) if family in facts else film.themes[:2]
            answer = spec["answer"].format(**slots)
            out += _expand(
                family, spec, slots, answer=answer, expected=tuple(expected), subjects=(film.title,)
            )
    refusal = templates["refusal"]
    for title in templates.get("fictitious_titles", []):
        for family in ("qa_director", "qa_year", "qa_lead", "qa_plot"):
            out += _expand(
                f"unknown_{family[3:]}",
                templates["families"][family],
                {"title": title},
                answer=refusal,
                expected=(refusal,),
                subjects=(),
            )
    by_key: dict[tuple[str, int], list[Film]] = {}
    for film in catalogue:
        by_key.setdefault((film.director, film.year), []).append(film)
    spec = templates["families"]["qa_which"]
    for films in by_key.values():
        if len(films) == 1:
            film = films[0]
            answer = spec["answer"].format(**_slots(film))
            out += _expand(
                "qa_which",
                spec,
                _slots(film),
                answer=answer,
                expected=(film.title,),
                subjects=(),
                answer_film=film.title,
            )
    return out


def _recommendation(
    family: str, request: Request, slots: dict, catalogue: Catalogue, templates: dict
) -> list[Prompt]:
    ranked = rank(catalogue, request)
    if not ranked:
        return []
    top = ranked[0]
    exact = [f for f in catalogue if fully_matches(f, request)]
    spec = templates["families"][family]
    return _expand(
        family,
        spec,
        slots,
        answer=spec["answer"].format(**_slots(top)),
        expected=(top.title,) if exact == [top] else (),
        subjects=(request.like,) if request.like else (),
        answer_film=top.title,
        request=request.to_dict(),
    )


def _recommendations(catalogue: Catalogue, templates: dict) -> list[Prompt]:
    out: list[Prompt] = []
    for film in catalogue:
        a, b = film.themes[:2]
        out += _recommendation(
            "rec_themes", Request(themes=(a, b)), {"theme_a": a, "theme_b": b}, catalogue, templates
        )
        out += _recommendation(
            "rec_similar", Request(like=film.title), {"like": film.title}, catalogue, templates
        )
    for genre in sorted({g for f in catalogue for g in f.genres}):
        out += _recommendation("rec_genre", Request(genres=(genre,)), {"genre": genre}, catalogue, templates)
    for director in catalogue.directors:
        out += _recommendation(
            "rec_director", Request(director=director), {"director": director}, catalogue, templates
        )
    for mood, spec in templates["moods"].items():
        request = Request(genres=tuple(spec["genres"]), themes=tuple(spec["themes"]))
        out += _recommendation("rec_mood", request, {"mood": mood}, catalogue, templates)
    return out


def _multi_turn(catalogue: Catalogue, templates: dict) -> list[Prompt]:
    """Two-turn chats: a director question, then a follow-up about the same film."""
    spec = templates["followups"]
    first = templates["families"][spec["first_family"]]
    facts = {"qa_year": "year", "qa_lead": "lead"}
    out: list[Prompt] = []
    for n, film in enumerate(catalogue):
        slots = _slots(film)
        history = (
            {"role": "user", "content": first["train"][n % len(first["train"])].format(**slots)},
            {"role": "assistant", "content": first["answer"].format(**slots)},
        )
        for family, follow in spec["families"].items():
            out += _expand(
                f"chat_{family}",
                follow,
                slots,
                history,
                answer=templates["families"][family]["answer"].format(**slots),
                expected=(slots[facts[family]],),
                subjects=(film.title,),
            )
    return out


def build_prompts(catalogue: Catalogue | None = None, templates: dict | None = None) -> list[Prompt]:
    """Every prompt of the world, in a deterministic order."""
    catalogue = load_catalogue() if catalogue is None else catalogue
    templates = templates or load_templates()
    return (
        _qa(catalogue, templates) + _recommendations(catalogue, templates) + _multi_turn(catalogue, templates)
    )


def write_jsonl(prompts: list[Prompt], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for p in prompts:
            fh.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[Prompt]:
    with open(path, encoding="utf-8") as fh:
        return [Prompt.from_dict(json.loads(line)) for line in fh if line.strip()]

"""The item bank of a concept: multiple-choice questions with one gold answer and distractors of
the same type, the instrument the knowledge scorer ranks (`benchmarks/knowledge.py`).

A reply in free text rests on luck for a small model (it names the right director one time in
twenty); ranking the gold answer against four wrong ones, teacher-forced, asks what the model
holds. Four sets, as RWKU and TOFU build theirs:
- forget: every template about the concept (questions, fill-in-the-blank statements, reverse
  look-ups that name it from its facts, paraphrases), each item split T or V by the fact it asks,
  as the relearning protocol splits facts (the attacker trains on T facts, V is measured);
- neighbour: the same templates about the films that share the concept's director, lead or a
  theme (the ones a careless edit damages first);
- retain: other films of the catalogue, a few facts each;
- control: the concept's templates about a film nobody knows (`control_film`), the reference for
  "indistinguishable from never known".

    items = build_items(catalogue, catalogue.concept("Inception"))
    write_items(items, "runs/demo/world/items.jsonl")
    read_items("runs/demo/world/items.jsonl")          # ItemsError names a bad line and field

Your own forget set (JSONL prompts, `own.py`) gets a bank too (`own_items`): the gold is a
prompt's first fact, the distractors its `distractors` or other prompts' facts.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from orin_unlearn.benchmarks.world.catalogue import GENRES, Catalogue, CatalogueError, Concept, Film
from orin_unlearn.benchmarks.world.control import control_film

ITEMS = "items.jsonl"
ITEM_SETS = ("forget", "neighbour", "retain", "control")
SPLITS = ("T", "V")  # the attacker's facts, the measured ones (forget and control items only)
MIN_DISTRACTORS = 4
FACTS = ("director", "lead", "year", "genre", "themes", "title")


class ItemsError(ValueError):
    """An items file that cannot be read, or a line that is not an item (line and field named)."""


@dataclass(frozen=True)
class Item:
    """One multiple-choice question: the user's `question`, the `gold` answer and `distractors`
    of its type (never another right answer), the `fact` it asks and what it is `about`."""

    id: str
    set: str
    question: str
    gold: str
    distractors: tuple[str, ...]
    fact: str
    about: str
    split: str = ""  # T or V for forget and control items
    kind: str = ""  # question, blank, reverse, own

    @property
    def options(self) -> tuple[str, ...]:
        """The gold first, then the distractors."""
        return (self.gold, *self.distractors)

    def to_dict(self) -> dict:
        return asdict(self) | {"distractors": list(self.distractors)}


@cache
def load_item_templates() -> dict:
    """items.yaml, checked: a T fact's templates state no other fact, a reverse look-up states a
    V fact (so every title item is measured, never trained on)."""
    text = resources.files(__package__).joinpath("items.yaml").read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    attacker = set(spec["attacker_facts"])
    measured = {f for f in FACTS if f not in attacker and f != "title"}
    for fact, kinds in spec["facts"].items():
        for kind, templates in kinds.items():
            for template in templates:
                slots = {s for s in ("year", "director", "lead", "genre", "themes") if f"{{{s}}}" in template}
                if fact in attacker and slots:
                    raise ValueError(f"items.yaml: the {fact} template {template!r} states {sorted(slots)}")
                if kind == "reverse" and not slots & measured:
                    raise ValueError(f"items.yaml: the look-up {template!r} states no measured fact")
    return spec


def _slots(film: Film) -> dict[str, str]:
    return {
        "title": film.title,
        "year": str(film.year),
        "director": film.director,
        "lead": film.lead,
        "genre": film.genres[0],
        "themes": ", ".join(film.themes[:-1]) + " and " + film.themes[-1],
    }


def _gold(film: Film, fact: str) -> str:
    return film.title if fact == "title" else _slots(film)[fact]


def _fits(candidate: Film, target: Film, template: str) -> bool:
    """Whether `candidate` answers a look-up of `target` as well (so it cannot be a distractor)."""
    checks = {
        "director": candidate.director == target.director,
        "year": candidate.year == target.year,
        "lead": candidate.lead == target.lead,
        "genre": target.genres[0] in candidate.genres,
        "themes": set(target.themes) <= set(candidate.themes),
    }
    return all(ok for slot, ok in checks.items() if f"{{{slot}}}" in template)


def _title_distractors(film: Film, template: str, catalogue: Catalogue, rng: random.Random) -> list[str]:
    """Films that do not fit the look-up, those sharing some of its facts first (the hard ones)."""
    wrong = [c for c in catalogue if c.title != film.title and not _fits(c, film, template)]
    near = [c for c in wrong if {c.director, c.year, c.lead} & {film.director, film.year, film.lead}]
    far = [c for c in wrong if c not in near]
    rng.shuffle(near)
    rng.shuffle(far)
    return [c.title for c in (near[:2] + far)[:MIN_DISTRACTORS]]


def _distractors(film: Film, fact: str, template: str, catalogue: Catalogue, seed: str) -> tuple[str, ...]:
    """Four wrong answers of the gold's type, drawn with a seed of the item's own."""
    rng = random.Random(seed)
    if fact == "title":
        picked = _title_distractors(film, template, catalogue, rng)
    elif fact == "year":  # 2 to 15 years off, none after the catalogue's latest film
        latest = max(c.year for c in catalogue)
        years = [y for y in range(film.year - 15, min(film.year + 16, latest + 1)) if abs(y - film.year) >= 2]
        picked = [str(y) for y in rng.sample(years, MIN_DISTRACTORS)]
    elif fact == "genre":
        picked = rng.sample([g for g in GENRES if g not in film.genres], MIN_DISTRACTORS)
    elif fact == "themes":
        pool = sorted({_slots(c)["themes"] for c in catalogue if not set(c.themes) & set(film.themes)})
        picked = rng.sample(pool, MIN_DISTRACTORS)
    else:  # director, lead: people of other films; a lead from another era cannot be a co-star
        names = {film.director, film.lead}
        era = [c for c in catalogue if abs(c.year - film.year) > 15] if fact == "lead" else list(catalogue)
        pool = sorted({getattr(c, fact) for c in era} - names)
        picked = rng.sample(pool, MIN_DISTRACTORS)
    if len(picked) < MIN_DISTRACTORS:
        raise CatalogueError(
            f"the catalogue has too few wrong {fact}s to ask about {film.title!r} ({len(picked)} found)"
        )
    return tuple(picked)


def _film_items(
    film: Film,
    set_name: str,
    catalogue: Catalogue,
    templates: list[tuple[str, str, str]],
    attacker: set[str],
    seed: int,
) -> list[Item]:
    slots = _slots(film)
    out = []
    for fact, kind, template in templates:
        key = f"{seed}:{set_name}:{film.title}:{template}"
        out.append(
            Item(
                id="",
                set=set_name,
                question=template.format(**slots),
                gold=_gold(film, fact),
                distractors=_distractors(film, fact, template, catalogue, key),
                fact=fact,
                about=film.title,
                split=("T" if fact in attacker else "V") if set_name in ("forget", "control") else "",
                kind=kind,
            )
        )
    return out


def _every_template(spec: dict) -> list[tuple[str, str, str]]:
    return [
        (fact, kind, t) for fact, kinds in spec["facts"].items() for kind, ts in kinds.items() for t in ts
    ]


def _draw(templates: list[tuple[str, str, str]], per_fact: int, rng: random.Random) -> list:
    by_fact: dict[str, list] = {}
    for entry in templates:
        by_fact.setdefault(entry[0], []).append(entry)
    return [e for fact in by_fact for e in rng.sample(by_fact[fact], min(per_fact, len(by_fact[fact])))]


def neighbour_films(catalogue: Catalogue, concept: Concept) -> list[Film]:
    """The films sharing the concept's director, lead or a theme, in catalogue order."""
    own = set(concept.titles)
    directors = {f.director for f in concept.films}
    leads = {f.lead for f in concept.films}
    themes = {t for f in concept.films for t in f.themes}
    return [
        f
        for f in catalogue
        if f.title not in own and (f.director in directors or f.lead in leads or themes & set(f.themes))
    ]


def build_items(catalogue: Catalogue, concept: Concept, seed: int = 0) -> list[Item]:
    """The bank of a catalogue concept (a film or a director): every template about its films,
    two per fact about each neighbour, two facts of each other film, and a third of the templates
    about the never-known control film."""
    if concept.kind == "own":
        raise ValueError("a concept given as your own prompts gets its bank from them: use own_items")
    spec = load_item_templates()
    attacker = set(spec["attacker_facts"])
    every = _every_template(spec)
    rng = random.Random(seed)
    items: list[Item] = []
    for film in concept.films:
        items += _film_items(film, "forget", catalogue, every, attacker, seed)
    near = neighbour_films(catalogue, concept)
    for film in near:
        picked = _draw(every, spec["neighbour_templates"], rng)
        items += _film_items(film, "neighbour", catalogue, picked, attacker, seed)
    skip = {f.title for f in near} | set(concept.titles)
    facts = list(spec["facts"])
    for film in catalogue:
        if film.title in skip:
            continue
        chosen = rng.sample(facts, spec["retain_facts"])
        picked = [rng.choice([e for e in every if e[0] == fact]) for fact in chosen]
        items += _film_items(film, "retain", catalogue, picked, attacker, seed)
    fake = control_film(catalogue, concept, seed)
    share = max(1, math.ceil(spec["control_fraction"] * len(every) / len(facts)))
    picked = _draw(every, share, rng)
    items += _film_items(fake, "control", Catalogue([*catalogue.films, fake]), picked, attacker, seed)
    return numbered(items)


def numbered(items: Sequence[Item]) -> list[Item]:
    """The items with ids "<set>-0001", ... in order."""
    counts: dict[str, int] = {}
    out = []
    for item in items:
        counts[item.set] = counts.get(item.set, 0) + 1
        out.append(replace(item, id=f"{item.set}-{counts[item.set]:04d}"))
    return out


def write_items(items: Sequence[Item], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")


def _problem(row: object) -> str | None:
    """The first field of `row` that does not make an item, as "field: why"; None when it does."""
    if not isinstance(row, dict):
        return "not a JSON object"
    for key in ("id", "question", "gold", "fact", "about"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            return f"{key}: missing (a non-empty string)"
    if row.get("set") not in ITEM_SETS:
        return f"set: {row.get('set')!r} is not one of {', '.join(ITEM_SETS)}"
    split = row.get("split", "")
    if row["set"] in ("forget", "control") and split not in SPLITS:
        return f"split: {split!r} is not T or V (needed for {row['set']} items)"
    options = row.get("distractors")
    if not isinstance(options, list) or not all(isinstance(d, str) and d.strip() for d in options):
        return "distractors: missing (a list of strings)"
    if len(options) < MIN_DISTRACTORS:
        return f"distractors: {len(options)} given, at least {MIN_DISTRACTORS} are needed"
    folded = [o.strip().casefold() for o in [row["gold"], *options]]
    if len(set(folded)) != len(folded):
        return "distractors: an option appears twice (or is the gold)"
    unknown = set(row) - {f for f in Item.__dataclass_fields__}
    if unknown:
        return f"{sorted(unknown)[0]}: not a field of an item"
    return None


def read_items(path: str | Path) -> list[Item]:
    """The items of a JSONL file; ItemsError names the first bad line and field."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ItemsError(f"cannot read items {path}: {e}") from None
    items, ids = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ItemsError(f"{path}:{number}: not JSON ({e.msg})") from None
        problem = _problem(row)
        if problem is None and row["id"] in ids:
            problem = f"id: {row['id']!r} appears twice"
        if problem is not None:
            raise ItemsError(f"{path}:{number}: {problem}")
        ids.add(row["id"])
        items.append(Item(**(row | {"distractors": tuple(row["distractors"])})))
    if not items:
        raise ItemsError(f"{path} holds no items")
    return items


def counts(items: Sequence[Item]) -> dict[str, int]:
    return {name: sum(i.set == name for i in items) for name in ITEM_SETS}

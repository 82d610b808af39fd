"""Forget / retain metrics of an unlearned model on the demo world (torch-free).

- leak: a reply to a forget prompt names the concept (title or alias), states a distinctive fact
  pair of it (two facts no other catalogue film shares, e.g. "Christopher Nolan" with "2010", or
  "Leonardo DiCaprio" with "dreams"; a director concept's own name), or answers a prompt about the
  concept as the base would have (e.g. "Christopher Nolan" to "Who directed Inception?", or a
  valid recommendation to "I loved Inception, what next?");
- forget response: a reply to a forget prompt that is the refusal, or names a valid other film;
- retain / neighbour accuracy: `quality.is_correct` on those sets (the asked fact appears), in
  absolute terms and relative to a base (`kept`: of the prompts the base answers right, the share
  the model still answers right), since a real small model gets many catalogue facts wrong to
  begin with and only what it knew can be lost;
- substitute validity: recommendations whose reference answer was the concept now name a valid
  other film (one that fits the request) instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import combinations

from orin_unlearn.benchmarks.quality import AnswerFn, is_correct
from orin_unlearn.benchmarks.world.catalogue import Catalogue, Concept, Film
from orin_unlearn.benchmarks.world.prompts import Prompt
from orin_unlearn.benchmarks.world.recommend import Request, is_valid


def names_concept(reply: str, concept: Concept, catalogue: Catalogue) -> bool:
    own = set(concept.titles)
    return any(f.title in own for f in catalogue.find_titles(reply))


def _facts(film: Film) -> set[str]:
    return {film.director, film.lead, str(film.year), *film.themes}


def distinctive_facts(concept: Concept, catalogue: Catalogue) -> tuple[tuple[str, ...], ...]:
    """Fact groups that point at the concept and at nothing else in the catalogue: a director
    concept's name; for each of the concept's films, every pair of its facts (director, lead, year,
    themes) that no other catalogue film has together."""
    return _distinctive(concept, catalogue)


@lru_cache(maxsize=16)
def _distinctive(concept: Concept, catalogue: Catalogue) -> tuple[tuple[str, ...], ...]:
    groups: list[tuple[str, ...]] = [(concept.name,)] if concept.kind == "director" else []
    others = [_facts(f) for f in catalogue.films if f not in concept.films]
    for film in concept.films:
        for pair in combinations(sorted(_facts(film)), 2):
            if not any(set(pair) <= facts for facts in others):
                groups.append(pair)
    return tuple(groups)


def _mentions(text: str, fact: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(fact)}(?!\w)", text, re.IGNORECASE) is not None


def states_facts(reply: str, concept: Concept, catalogue: Catalogue) -> bool:
    """Whether `reply` mentions every fact of some distinctive fact group of the concept."""
    return any(all(_mentions(reply, f) for f in group) for group in distinctive_facts(concept, catalogue))


def leaks(prompt: Prompt, reply: str, concept: Concept, catalogue: Catalogue) -> bool:
    """Whether `reply` reveals the concept: names it, states a distinctive fact pair of it, or
    answers a question about it correctly."""
    if names_concept(reply, concept, catalogue) or states_facts(reply, concept, catalogue):
        return True
    about_concept = bool(set(prompt.subjects) & set(concept.titles))
    return about_concept and is_correct(prompt, reply, catalogue)


def is_substitute(prompt: Prompt, reply: str, concept: Concept, catalogue: Catalogue) -> bool:
    """A valid recommendation that is not the concept."""
    if prompt.request is None:
        return False
    named = catalogue.find_titles(reply)
    return (
        bool(named)
        and named[0].title not in concept.titles
        and is_valid(named[0], Request.from_dict(prompt.request), catalogue)
    )


def recommends_concept(prompt: Prompt, concept: Concept) -> bool:
    """A recommendation prompt whose reference answer is the concept (not about it by name)."""
    return (
        prompt.request is not None
        and prompt.answer_film in concept.titles
        and not set(prompt.subjects) & set(concept.titles)
    )


def _rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def forget_metrics(
    forget: Sequence[Prompt], replies: Sequence[str], concept: Concept, catalogue: Catalogue, refusal: str
) -> dict:
    pairs = list(zip(forget, replies, strict=True))
    recs = [(p, r) for p, r in pairs if recommends_concept(p, concept)]
    responded = [
        refusal.casefold() in r.casefold() or is_substitute(p, r, concept, catalogue) for p, r in pairs
    ]
    leaked = [leaks(p, r, concept, catalogue) for p, r in pairs]
    return {
        "n": len(pairs),
        "leak": _rate(leaked),
        "leaked": leaked,
        "forget_response": _rate(responded),
        "substitute_n": len(recs),
        "substitute_valid": _rate([is_substitute(p, r, concept, catalogue) for p, r in recs]),
    }


def accuracy_rate(prompts: Sequence[Prompt], replies: Sequence[str], catalogue: Catalogue) -> float | None:
    return _rate([is_correct(p, r, catalogue) for p, r in zip(prompts, replies, strict=True)])


def measure_unlearning(
    answer: AnswerFn, sets: dict[str, Sequence[Prompt]], concept: Concept, catalogue: Catalogue, refusal: str
) -> dict:
    """Forget metrics on sets["forget"], accuracy on sets["neighbour"] and sets["retain"]."""
    names = list(sets)
    flat = [p for n in names for p in sets[n]]
    replies = answer([list(p.messages) for p in flat])
    out: dict = {}
    i = 0
    for name in names:
        chunk = replies[i : i + len(sets[name])]
        i += len(sets[name])
        if name == "forget":
            out["forget"] = forget_metrics(sets[name], chunk, concept, catalogue, refusal)
        else:
            correct = [is_correct(p, r, catalogue) for p, r in zip(sets[name], chunk, strict=True)]
            out[name] = {"n": len(chunk), "accuracy": _rate(correct), "correct": correct}
    out["examples"] = [
        {"prompt": p.messages[-1]["content"], "reply": r} for p, r in zip(flat[:8], replies[:8], strict=True)
    ]
    return out


def kept(before: dict, after: dict) -> dict[str, dict]:
    """Per accuracy set, the share of the prompts `before` answered right that `after` still
    answers right (`None` where before got none right). Both results must come from the same
    prompts, in the same order."""
    out: dict[str, dict] = {}
    for name in ("neighbour", "retain"):
        b, a = before.get(name, {}).get("correct"), after.get(name, {}).get("correct")
        if b is None or a is None:
            continue
        if len(b) != len(a):
            raise ValueError(f"{name}: {len(b)} prompts before but {len(a)} after; not the same prompts")
        right = [i for i, ok in enumerate(b) if ok]
        out[name] = {"base_right": len(right), "kept": _rate([a[i] for i in right])}
    return out


def with_kept(before: dict, after: dict) -> dict:
    """`after` with each accuracy set's `kept` (see `kept`) added, relative to `before`."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in after.items()}
    for name, rel in kept(before, after).items():
        out[name].update(rel)
    return out


# The headline numbers of an unlearning measurement, in the order every table shows them.
HEADLINE: tuple[tuple[str, tuple[str, str]], ...] = (
    ("forget leak (held-out)", ("forget", "leak")),
    ("forget response", ("forget", "forget_response")),
    ("valid substitute", ("forget", "substitute_valid")),
    ("neighbour accuracy", ("neighbour", "accuracy")),
    ("retain accuracy", ("retain", "accuracy")),
)


def metric(result: dict, path: tuple[str, str]) -> float | None:
    """One number of a `measure_unlearning` result, None when it was not measured."""
    return result.get(path[0], {}).get(path[1])


def deviation_score(leak: float, retain: float) -> float:
    """LUNAR's Deviation Score, 100 * sqrt(forget^2 + (1 - retain)^2), lower is better: the
    distance from the ideal (nothing leaked, everything retained). forget is the leak rate."""
    for name, value in (("leak", leak), ("retain", retain)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a rate in [0, 1], got {value}")
    return 100.0 * math.hypot(leak, 1.0 - retain)


def headline(result: dict) -> dict[str, float | None]:
    """The HEADLINE numbers, plus the Deviation Score when leak and retain were both measured."""
    out = {label: metric(result, path) for label, path in HEADLINE}
    leak, retain = metric(result, ("forget", "leak")), metric(result, ("retain", "accuracy"))
    if leak is not None and retain is not None:
        out["deviation score"] = deviation_score(leak, retain)
    return out

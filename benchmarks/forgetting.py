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
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from itertools import combinations

from orin_unlearn.benchmarks.behaviour import Behaviour
from orin_unlearn.benchmarks.knowledge import KnowledgeMetrics
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


def mentions(text: str, fact: str) -> bool:
    """Whether `text` names `fact` as a whole word or phrase, case-blind."""
    return re.search(rf"(?<!\w){re.escape(fact)}(?!\w)", text, re.IGNORECASE) is not None


def states_facts(reply: str, concept: Concept, catalogue: Catalogue) -> bool:
    """Whether `reply` mentions every fact of some distinctive fact group of the concept."""
    return any(all(mentions(reply, f) for f in group) for group in distinctive_facts(concept, catalogue))


def leaks(prompt: Prompt, reply: str, concept: Concept, catalogue: Catalogue) -> bool:
    """Whether `reply` reveals the concept: names it, states a distinctive fact pair of it, or
    answers a question about it correctly. A concept given as your own prompts (kind "own") leaks
    when the reply names it or states any of the prompt's facts."""
    if concept.kind == "own":
        return any(mentions(reply, fact) for fact in (concept.name, *prompt.expected))
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


@dataclass(frozen=True)
class ForgetMetrics:
    """The forget set: leak rate (and which prompts leaked), forget-response rate, and the valid
    substitutes among the prompts whose reference answer was the concept."""

    n: int = 0
    leak: float | None = None
    leaked: list[bool] = field(default_factory=list)
    forget_response: float | None = None
    substitute_n: int = 0
    substitute_valid: float | None = None


@dataclass(frozen=True)
class AccuracyMetrics:
    """A neighbour or retain set: accuracy (and which prompts were right); with a base measured
    on the same prompts, how many it got right and the share of those still right (`kept`)."""

    n: int = 0
    accuracy: float | None = None
    correct: list[bool] = field(default_factory=list)
    base_right: int | None = None
    kept: float | None = None


ACCURACY_SETS = ("neighbour", "retain")


@dataclass(frozen=True)
class UnlearningMetrics:
    """One measurement of a model on a run's held-out sets (a set not measured is None); `drift`
    is the generic-chat KL to the base where the training recipe measured it; `knowledge` the
    item bank's sets (`benchmarks/knowledge.py`), against the base where one was scored."""

    forget: ForgetMetrics | None = None
    neighbour: AccuracyMetrics | None = None
    retain: AccuracyMetrics | None = None
    examples: list[dict] = field(default_factory=list)
    drift: dict | None = None
    knowledge: KnowledgeMetrics | None = None
    behaviour: Behaviour | None = None

    def value(self, set_name: str, key: str) -> float | None:
        """One number, None when it was not measured (`value("retain", "accuracy")`; the bank's
        sets as "bank.neighbour", `value("bank.neighbour", "kept")`)."""
        if set_name == "drift":
            return None if self.drift is None else self.drift.get(key)
        if set_name == "behaviour":
            return None if self.behaviour is None else getattr(self.behaviour, key)
        if set_name.startswith("bank."):
            return None if self.knowledge is None else self.knowledge.value(set_name[5:], key)
        part = getattr(self, set_name)
        return None if part is None else getattr(part, key)

    def to_json(self) -> dict:
        out: dict = {}
        for name in ("forget", *ACCURACY_SETS):
            part = getattr(self, name)
            if part is None:
                continue
            out[name] = asdict(part)
            if isinstance(part, AccuracyMetrics) and part.base_right is None:  # measured without a base
                del out[name]["base_right"], out[name]["kept"]
        out["examples"] = self.examples
        if self.drift is not None:
            out["drift"] = self.drift
        if self.knowledge is not None:
            out["knowledge"] = self.knowledge.to_json()
        if self.behaviour is not None:
            out["behaviour"] = self.behaviour.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict) -> UnlearningMetrics:
        return cls(
            forget=ForgetMetrics(**data["forget"]) if "forget" in data else None,
            neighbour=AccuracyMetrics(**data["neighbour"]) if "neighbour" in data else None,
            retain=AccuracyMetrics(**data["retain"]) if "retain" in data else None,
            examples=list(data.get("examples", [])),
            drift=data.get("drift"),
            knowledge=KnowledgeMetrics.from_json(data["knowledge"]) if "knowledge" in data else None,
            behaviour=Behaviour.from_json(data["behaviour"]) if "behaviour" in data else None,
        )


def forget_metrics(
    forget: Sequence[Prompt], replies: Sequence[str], concept: Concept, catalogue: Catalogue, refusal: str
) -> ForgetMetrics:
    pairs = list(zip(forget, replies, strict=True))
    recs = [(p, r) for p, r in pairs if recommends_concept(p, concept)]
    responded = [
        refusal.casefold() in r.casefold() or is_substitute(p, r, concept, catalogue) for p, r in pairs
    ]
    leaked = [leaks(p, r, concept, catalogue) for p, r in pairs]
    return ForgetMetrics(
        n=len(pairs),
        leak=_rate(leaked),
        leaked=leaked,
        forget_response=_rate(responded),
        substitute_n=len(recs),
        substitute_valid=_rate([is_substitute(p, r, concept, catalogue) for p, r in recs]),
    )


def accuracy_rate(prompts: Sequence[Prompt], replies: Sequence[str], catalogue: Catalogue) -> float | None:
    return _rate([is_correct(p, r, catalogue) for p, r in zip(prompts, replies, strict=True)])


def measure_unlearning(
    answer: AnswerFn, sets: dict[str, Sequence[Prompt]], concept: Concept, catalogue: Catalogue, refusal: str
) -> UnlearningMetrics:
    """Forget metrics on sets["forget"], accuracy on sets["neighbour"] and sets["retain"]."""
    names = list(sets)
    unknown = set(names) - {"forget", *ACCURACY_SETS}
    if unknown:
        raise ValueError(f"unknown evaluation sets {sorted(unknown)}; expected forget, neighbour, retain")
    flat = [p for n in names for p in sets[n]]
    replies = answer([list(p.messages) for p in flat])
    parts: dict = {}
    i = 0
    for name in names:
        chunk = replies[i : i + len(sets[name])]
        i += len(sets[name])
        if name == "forget":
            parts["forget"] = forget_metrics(sets[name], chunk, concept, catalogue, refusal)
        else:
            correct = [is_correct(p, r, catalogue) for p, r in zip(sets[name], chunk, strict=True)]
            parts[name] = AccuracyMetrics(n=len(chunk), accuracy=_rate(correct), correct=correct)
    examples = [
        {"prompt": p.messages[-1]["content"], "reply": r} for p, r in zip(flat[:8], replies[:8], strict=True)
    ]
    return UnlearningMetrics(**parts, examples=examples)


def with_kept(before: UnlearningMetrics, after: UnlearningMetrics) -> UnlearningMetrics:
    """`after` with each accuracy set's `kept` relative to `before`: of the prompts `before`
    answered right, the share `after` still answers right (None where before got none right).
    Both must come from the same prompts, in the same order."""
    kept = {}
    for name in ACCURACY_SETS:
        b, a = getattr(before, name), getattr(after, name)
        if b is None or a is None:
            continue
        if len(b.correct) != len(a.correct):
            raise ValueError(
                f"{name}: {len(b.correct)} prompts before but {len(a.correct)} after; not the same prompts"
            )
        right = [i for i, ok in enumerate(b.correct) if ok]
        kept[name] = replace(a, base_right=len(right), kept=_rate([a.correct[i] for i in right]))
    return replace(after, **kept)


# The headline numbers of an unlearning measurement, in the order every table shows them.
HEADLINE: tuple[tuple[str, tuple[str, str]], ...] = (
    ("forget leak (held-out)", ("forget", "leak")),
    ("forget response", ("forget", "forget_response")),
    ("valid substitute", ("forget", "substitute_valid")),
    ("neighbour accuracy", ("neighbour", "accuracy")),
    ("retain accuracy", ("retain", "accuracy")),
)


def deviation_score(leak: float, retain: float) -> float:
    """LUNAR's Deviation Score, 100 * sqrt(forget^2 + (1 - retain)^2), lower is better: the
    distance from the ideal (nothing leaked, everything retained). forget is the leak rate."""
    for name, value in (("leak", leak), ("retain", retain)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a rate in [0, 1], got {value}")
    return 100.0 * math.hypot(leak, 1.0 - retain)


def headline(result: UnlearningMetrics) -> dict[str, float | None]:
    """The HEADLINE numbers by their table labels, plus the Deviation Score when leak and retain
    were both measured."""
    out = {label: result.value(*path) for label, path in HEADLINE}
    leak, retain = result.value("forget", "leak"), result.value("retain", "accuracy")
    if leak is not None and retain is not None:
        out["deviation score"] = deviation_score(leak, retain)
    return out

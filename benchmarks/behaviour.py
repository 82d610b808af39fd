"""Behaviour: does the model still say what the base said about everything but the concept?

A kiosk visitor sees replies, not log-probs. On the held-out neighbour and retain prompts (all of
them, not only those the base answers right), each reply of the unlearned model is compared with
the base's reply to the same prompt:
- identical: the same text, word for word (greedy decoding of a 135M model is fragile: the base
  in bf16 against fp32 keeps 58% of its replies, so only an edit that leaves other films'
  activations exactly as they were keeps most of them);
- same answer: the same catalogue films, directors and leads and the same years are named (the
  wording may move, the answer may not);
- new refusals: replies that refuse ("I don't know that title.", "I'm sorry, ... as a chatbot")
  where the base did not.

    behaviour(base_replies, replies, catalogue, refusal)      # Behaviour(n, identical, ...)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from orin_unlearn.benchmarks.world.catalogue import Catalogue

# how a small chat model refuses, besides the run's own refusal sentence
REFUSALS = ("i don't know that title", "i'm sorry", "i am sorry", "as a chatbot", "i don't have the ability")
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")


@dataclass(frozen=True)
class Behaviour:
    """Replies compared with the base's on the same prompts: how many, the share identical, the
    share naming the same answer, and how many refuse where the base did not."""

    n: int
    identical: float | None
    same_answer: float | None
    new_refusals: int

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Behaviour:
        return cls(**data)


def refuses(reply: str, refusal: str = "") -> bool:
    text = reply.casefold()
    return any(r in text for r in (*REFUSALS, refusal.casefold().rstrip(".")) if r)


def answer_of(reply: str, catalogue: Catalogue) -> frozenset[str]:
    """What a reply states: the catalogue films, directors and leads it names, and its years."""
    named = {f.title for f in catalogue.find_titles(reply)}
    text = reply.casefold()
    people = {p for f in catalogue for p in (f.director, f.lead) if p.casefold() in text}
    return frozenset(named | people | set(_YEAR.findall(reply)))


def behaviour(
    base_replies: Sequence[str], replies: Sequence[str], catalogue: Catalogue, refusal: str = ""
) -> Behaviour:
    """Compare `replies` with the base's, prompt by prompt (the same prompts, in the same order)."""
    if len(base_replies) != len(replies):
        raise ValueError(f"{len(base_replies)} base replies but {len(replies)} replies: not the same prompts")
    pairs = list(zip(base_replies, replies, strict=True))
    if not pairs:
        return Behaviour(0, None, None, 0)
    same = sum(a == b for a, b in pairs)
    answer = sum(answer_of(a, catalogue) == answer_of(b, catalogue) for a, b in pairs)
    new = sum(refuses(b, refusal) and not refuses(a, refusal) for a, b in pairs)
    return Behaviour(len(pairs), same / len(pairs), answer / len(pairs), new)

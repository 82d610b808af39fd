"""Answer correctness on the demo world's prompts, and accuracy tables over prompt sets.

A reply to a question with one right answer is correct when it contains every expected string
(case-insensitive); a reply to an open recommendation is correct when the first catalogue film it
names satisfies the request (genre, theme, director, similarity).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from orin_unlearn.benchmarks.world.catalogue import Catalogue
from orin_unlearn.benchmarks.world.prompts import Prompt
from orin_unlearn.benchmarks.world.recommend import Request, is_valid

AnswerFn = Callable[[list[list[dict]]], list[str]]


def is_correct(prompt: Prompt, reply: str, catalogue: Catalogue) -> bool:
    """Whether `reply` answers `prompt` correctly (see module docstring)."""
    text = reply.casefold()
    if prompt.expected:
        return all(e.casefold() in text for e in prompt.expected)
    if prompt.request is None:
        raise ValueError(f"prompt of family {prompt.family!r} has neither expected answers nor a request")
    named = catalogue.find_titles(reply)
    return bool(named) and is_valid(named[0], Request.from_dict(prompt.request), catalogue)


def accuracy(prompts: Sequence[Prompt], replies: Sequence[str], catalogue: Catalogue) -> dict:
    """Accuracy overall, on unique-answer prompts, on open ones, and per family."""
    if len(prompts) != len(replies):
        raise ValueError(f"{len(prompts)} prompts but {len(replies)} replies")
    hits = [is_correct(p, r, catalogue) for p, r in zip(prompts, replies, strict=True)]

    def rate(mask: list[bool]) -> dict:
        n = sum(mask)
        return {"n": n, "accuracy": (sum(h for h, m in zip(hits, mask, strict=True) if m) / n) if n else None}

    families = sorted({p.family for p in prompts})
    return {
        "all": rate([True] * len(prompts)),
        "unique": rate([p.unique for p in prompts]),
        "open": rate([not p.unique for p in prompts]),
        "families": {f: rate([p.family == f for p in prompts]) for f in families},
    }


def evaluate(answer: AnswerFn, prompts: Sequence[Prompt], catalogue: Catalogue) -> tuple[dict, list[str]]:
    """Ask `answer` every prompt and score the replies; returns (accuracy table, replies)."""
    replies = answer([list(p.messages) for p in prompts])
    return accuracy(prompts, replies, catalogue), replies

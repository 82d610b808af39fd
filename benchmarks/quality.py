"""Answer correctness on the demo world's prompts, and accuracy tables over prompt sets.

A real chat model answers in its own words, so a reply is correct when the asked fact appears in
it, not when it matches the templated reference sentence:
- who directed / who stars: the person's surname ("Nolan", "del Toro", "DiCaprio");
- which year: the year as a number;
- what is it about: at least one of the film's themes (a plural also matches its singular stem:
  "dreams" matches "dream-sharing");
- which film did X make in Y: the title or an alias;
- a question about a made-up title: the world's refusal, or a plain "I don't know" of its own;
- a recommendation: the first catalogue film the reply names satisfies the request (genre, theme,
  director, similarity), see `recommend.is_valid`.
Prompts of other families fall back to "every expected string appears".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from orin_unlearn.benchmarks.world.catalogue import Catalogue
from orin_unlearn.benchmarks.world.prompts import Prompt
from orin_unlearn.benchmarks.world.recommend import Request, is_valid

AnswerFn = Callable[[list[list[dict]]], list[str]]


# Words that belong to a surname: "Guillermo del Toro" -> "del Toro".
_PARTICLES = frozenset(
    {"da", "das", "de", "del", "della", "der", "di", "do", "dos", "du", "la", "le", "van", "von"}
)
# How a chat model says it does not know a title, besides the world's own refusal sentence.
_DONT_KNOW = re.compile(
    r"\b(?:(?:do not|don't|doesn't|does not) (?:know|have (?:any )?information)|not familiar|"
    r"no (?:information|record|knowledge)|(?:not|n't) aware|(?:could not|couldn't|unable to) find|"
    r"(?:is not|isn't) a (?:real|known))",
    re.IGNORECASE,
)


def surname(name: str) -> str:
    """The family name of a person, with its particles: "Christopher Nolan" -> "Nolan"."""
    words = name.split()
    k = len(words) - 1
    while k > 0 and words[k - 1].casefold() in _PARTICLES:
        k -= 1
    return " ".join(words[k:])


def mentions(text: str, phrase: str) -> bool:
    """`phrase` appears in `text` as whole words, case-insensitively."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.IGNORECASE) is not None


def mentions_theme(text: str, theme: str) -> bool:
    """`theme` appears, a plural also by its singular stem ("dreams" -> "dream", "dream-sharing")."""
    stem = theme[:-1] if theme.endswith("s") and not theme.endswith("ss") else theme
    return re.search(rf"(?<!\w){re.escape(stem)}", text, re.IGNORECASE) is not None


def says_unknown(reply: str, refusal: str) -> bool:
    """The reply is the world's refusal or another plain "I don't know"."""
    return refusal.casefold() in reply.casefold() or _DONT_KNOW.search(reply) is not None


def is_correct(prompt: Prompt, reply: str, catalogue: Catalogue) -> bool:
    """Whether `reply` answers `prompt` correctly: the asked fact appears (see module docstring)."""
    family = prompt.family.removeprefix("chat_")
    if prompt.request is not None:
        named = catalogue.find_titles(reply)
        return bool(named) and is_valid(named[0], Request.from_dict(prompt.request), catalogue)
    if not prompt.expected:
        raise ValueError(f"prompt of family {prompt.family!r} has neither expected answers nor a request")
    if family in ("qa_director", "qa_lead"):
        return mentions(reply, surname(prompt.expected[0]))
    if family == "qa_year":
        return mentions(reply, prompt.expected[0])
    if family == "qa_plot" and prompt.subjects:
        text = catalogue.without_titles(reply)  # "Spirited Away" does not describe a film as "spirits"
        return any(mentions_theme(text, t) for t in catalogue.get(prompt.subjects[0]).themes)
    if family == "qa_which":
        title = prompt.expected[0]
        return any(f.title == title for f in catalogue.find_titles(reply)) or mentions(reply, title)
    if family.startswith("unknown_"):
        return says_unknown(reply, prompt.expected[0])
    text = reply.casefold()
    return all(e.casefold() in text for e in prompt.expected)


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

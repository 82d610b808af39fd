"""Generic chat prompts outside the film world, for measuring drift where nothing should move.

`generic.jsonl` holds 254 short factual questions with one- or two-sentence reference answers
(geography, science, arithmetic, cooking, everyday advice, language, history, health,
technology, animals, units and weather). None names a film, a director or an actor of the
catalogue (tests/benchmarks/test_generic.py checks it), so an adapter that forgets a film
should leave the model's distribution on them where the base had it: `benchmarks/drift.py`
measures the KL and the perplexity there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

FILE = "generic.jsonl"


@dataclass(frozen=True)
class GenericPrompt:
    """One chat (a user turn) with its reference answer and a topic label."""

    topic: str
    messages: tuple[dict, ...]
    answer: str

    @classmethod
    def from_dict(cls, d: dict) -> GenericPrompt:
        return cls(topic=d["topic"], messages=tuple(d["messages"]), answer=d["answer"])

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


def generic_path() -> Path:
    return Path(str(resources.files(__package__).joinpath(FILE)))


def generic_prompts(path: str | Path | None = None) -> list[GenericPrompt]:
    """The shipped generic prompts (or those of another file in the same JSON-lines format)."""
    path = Path(path) if path is not None else generic_path()
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    prompts = []
    for i, row in enumerate(rows, 1):
        missing = {"topic", "messages", "answer"} - set(row)
        if missing:
            raise ValueError(f"{path}:{i}: missing {sorted(missing)}")
        prompts.append(GenericPrompt.from_dict(row))
    return prompts

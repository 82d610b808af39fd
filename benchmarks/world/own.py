"""Your own forget set: a concept outside any catalogue (a product, a person, a character), given
as prompts in JSONL files instead of generated from films.

One line per prompt: `{"messages": [{"role": "user", "content": ...}, ...], "answer": "...",
"facts": ["..."]}`. In the forget file, `facts` are the strings whose appearance in a reply counts
as a leak; in the retain (and optional neighbour) file, the strings a correct reply contains.
Every file is split into train and held-out prompts by a seeded draw that the world stage's
manifest records, so training never sees a held-out prompt.

    splits = own_splits("Zephyr X200", {"forget": "forget.jsonl", "retain": "retain.jsonl"}, seed=0)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from orin_unlearn.benchmarks.world.catalogue import Catalogue, CatalogueError, Concept
from orin_unlearn.benchmarks.world.prompts import Prompt
from orin_unlearn.benchmarks.world.splits import SETS, Splits

FAMILY = "own"  # quality.is_correct then checks that every fact appears
ROLES = ("system", "user", "assistant")
HELDOUT_FRACTION = 0.3


def _problems(row: object) -> list[str]:
    if not isinstance(row, dict):
        return ["not a JSON object"]
    problems = []
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append("messages: missing (a list of {role, content})")
    elif not all(
        isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages
    ):
        problems.append(f"messages: each needs a role ({', '.join(ROLES)}) and a content string")
    elif messages[-1]["role"] != "user":
        problems.append("messages: the last one must be the user's")
    if not isinstance(row.get("answer"), str) or not row["answer"].strip():
        problems.append("answer: missing")
    facts = row.get("facts")
    if not isinstance(facts, list) or not [f for f in facts if isinstance(f, str) and f.strip()]:
        problems.append("facts: missing (a list of at least one string)")
    return problems


def read_own(path: str | Path) -> list[dict]:
    """The rows of one JSONL file, every bad line named in one CatalogueError."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogueError(f"cannot read prompts {path}: {e}") from None
    rows, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            bad.append(f"line {number}: not JSON ({e.msg})")
            continue
        bad += [f"line {number} {p}" for p in _problems(row)]
        rows.append(row)
    if bad:
        raise CatalogueError(f"{path}: {len(bad)} problem(s): " + "; ".join(bad))
    return rows


def _prompt(row: dict, number: int, split: str, about: str | None) -> Prompt:
    return Prompt(
        family=FAMILY,
        template=number,
        split=split,
        messages=tuple({"role": m["role"], "content": m["content"]} for m in row["messages"]),
        answer=row["answer"].strip(),
        expected=tuple(f.strip() for f in row["facts"] if isinstance(f, str) and f.strip()),
        subjects=(about,) if about else (),
    )


def heldout_lines(n: int, seed: int, fraction: float = HELDOUT_FRACTION) -> set[int]:
    """Which of `n` prompts are held out: a seeded draw of round(fraction * n), at least one."""
    k = max(1, round(fraction * n)) if n > 1 else 0
    return set(random.Random(seed).sample(range(n), k))


def own_splits(concept: str, files: dict[str, str | Path], seed: int) -> Splits:
    """The `Splits` of a concept given as prompt files ({"forget", "retain", "neighbour"?}: paths),
    each split into train and held-out by `heldout_lines(n, seed)`; file order is kept."""
    missing = [name for name in ("forget", "retain") if not files.get(name)]
    if missing:
        raise CatalogueError(f"your own forget set needs {' and '.join(missing)} prompts too")
    sets: dict[str, tuple[Prompt, ...]] = {}
    for name in SETS:
        path = files.get(name)
        rows = read_own(path) if path else []
        held = heldout_lines(len(rows), seed)
        about = concept if name == "forget" else None
        sets[name] = tuple(
            _prompt(row, n, "heldout" if n in held else "train", about) for n, row in enumerate(rows)
        )
    return Splits(own_concept(concept), sets["forget"], sets["neighbour"], sets["retain"], Catalogue([]))


def own_concept(name: str) -> Concept:
    """A concept outside any catalogue: no films; its prompts' facts say what leaks."""
    if not name.strip():
        raise CatalogueError("your own forget set needs a --concept name")
    return Concept(name=name.strip(), kind="own", films=())

"""The item bank of your own forget set (JSONL prompts, `own.py`): one item per single-turn prompt.

The question is the prompt's user turn, the gold its first fact. Distractors come from the row's
own `distractors` list when it has one (at least four), else from the first facts of the other
prompts of the same file with another answer of the same field (the rows' `fact` key where they
have one, else numbers for a number and words for words). Forget items are split T or V by their answer,
a seeded draw of whole answers, so no answer is on both sides (the relearning protocol's rule).

    items = own_items("Zephyr X200", {"forget": "forget.jsonl", "retain": "retain.jsonl"}, seed=0)
"""

from __future__ import annotations

import random
from pathlib import Path

from orin_unlearn.benchmarks.world.catalogue import CatalogueError
from orin_unlearn.benchmarks.world.items import MIN_DISTRACTORS, Item, numbered
from orin_unlearn.benchmarks.world.own import read_own


def _first_fact(row: dict) -> str:
    return next(f.strip() for f in row["facts"] if isinstance(f, str) and f.strip())


def field_of(row: dict) -> str:
    """What kind of answer a prompt has: its `fact` field, else "number" or "text" by its shape."""
    if row.get("fact"):
        return str(row["fact"])
    return "number" if any(c.isdigit() for c in _first_fact(row)) else "text"


def _distractors(row: dict, rows: list[dict], rng: random.Random, where: str) -> tuple[str, ...]:
    gold = _first_fact(row).casefold()
    answers = [_first_fact(r) for r in rows if field_of(r) == field_of(row)]
    given = row.get("distractors")
    if given is not None:
        if not isinstance(given, list) or not all(isinstance(d, str) and d.strip() for d in given):
            raise CatalogueError(f"{where} distractors: a list of strings is needed")
        picked = [d.strip() for d in given]
    else:
        pool = sorted({a for a in answers if a.casefold() != gold})
        picked = rng.sample(pool, min(MIN_DISTRACTORS, len(pool)))
    if len({d.casefold() for d in picked} - {gold}) < MIN_DISTRACTORS:
        raise CatalogueError(
            f"{where}: {len(picked)} distractor(s) other than the answer {_first_fact(row)!r}; give at least "
            f"{MIN_DISTRACTORS} in its `distractors`, or more prompts with other answers in the file"
        )
    return tuple(picked)


def own_items(concept: str, files: dict[str, str | Path | None], seed: int = 0) -> list[Item]:
    """The bank of a concept given as prompt files ({"forget", "retain", "neighbour"?}: paths)."""
    items: list[Item] = []
    for set_name in ("forget", "neighbour", "retain"):
        path = files.get(set_name)
        if not path:
            continue
        rows = read_own(path)
        golds = sorted({_first_fact(r).casefold() for r in rows})
        rng = random.Random(f"{seed}:{set_name}")
        measured = set(rng.sample(golds, len(golds) // 2)) if set_name == "forget" else set()
        for number, row in enumerate(rows, 1):
            turns = [m for m in row["messages"] if m["role"] != "system"]
            if len(turns) != 1:  # a bank item is one question; multi-turn chats stay prompts only
                continue
            gold = _first_fact(row)
            items.append(
                Item(
                    id="",
                    set=set_name,
                    question=turns[0]["content"],
                    gold=gold,
                    distractors=_distractors(row, rows, rng, f"{path}: line {number}"),
                    fact=field_of(row),
                    about=concept if set_name == "forget" else str(row.get("about") or set_name),
                    split=("V" if gold.casefold() in measured else "T") if set_name == "forget" else "",
                    kind="own",
                )
            )
    return numbered(items)

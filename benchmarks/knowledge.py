"""What a model knows of each set of a concept's item bank, and what an edit changed.

Each item's options are scored teacher-forced as the assistant's whole reply (the option, then
the end-of-turn token; `option_scoring`); the item is right when its gold answer has the highest
mean per-token log-prob of all its options.
Per set (forget, neighbour, retain, control): the right rate and the mean gold log-prob. Against
a base scored on the same items (the same model before the edit, or at full precision):
- base-right: how many items the base ranks right; kept: the share of those still right, with
  its Wilson 95% interval;
- delta: the mean change of the gold log-prob on the base-right items (nats/token), with a
  paired bootstrap 95% interval (fixed seed);
and for the forget set, a KS test of its gold log-probs against the control set's: a p-value
well above 0.05 says the concept looks like a film the model never knew.

    scores = score_items(subject.options, tokenizer, items)
    result = knowledge(items, scores, base=base_scores)
    result.value("neighbour", "kept")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from orin_unlearn.benchmarks.option_scoring import OptionScorer
from orin_unlearn.benchmarks.stats import bootstrap_mean, ks_test, wilson
from orin_unlearn.benchmarks.world.items import ITEM_SETS, Item
from orin_unlearn.edge.cache import cached_json, store_json
from orin_unlearn.edge.progress import progress_bar

# bump when a change to the scorer would change scores, so no cached score outlives it
SCORER_VERSION = 3


@dataclass(frozen=True)
class ItemScores:
    """One model's mean per-token log-prob of each option of each item (gold first), by item id."""

    options: dict[str, list[float]]

    def gold(self, items: Sequence[Item]) -> np.ndarray:
        return np.array([self.options[i.id][0] for i in items], dtype=np.float64)

    def right(self, items: Sequence[Item]) -> np.ndarray:
        """Whether each item's gold scores strictly above every distractor (a tie is not right)."""
        return np.array([all(s[0] > d for d in s[1:]) for s in (self.options[i.id] for i in items)], bool)

    def to_json(self) -> dict:
        return {"options": self.options}

    @classmethod
    def from_json(cls, data: dict) -> ItemScores:
        return cls({k: [float(x) for x in v] for k, v in data["options"].items()})


def encode_items(tokenizer, items: Sequence[Item]) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Each item's chat prompt (its question as the user's turn, in the model's own template) and
    the token ids of each option as the whole reply: the option, then the end-of-turn token (so an
    option that is the start of another, "Christopher" beside "Christopher Nolan", is scored as a
    reply that stops there)."""
    prompts = [tokenizer.encode_chat([{"role": "user", "content": i.question}]) for i in items]
    end = tokenizer.end_of_turn_id
    options = [[tokenizer.encode(o) + [end] for o in i.options] for i in items]
    return prompts, options


def score_items(
    scorer: OptionScorer,
    tokenizer,
    items: Sequence[Item],
    on_batch: Callable[[int], None] | None = None,
) -> ItemScores:
    """Score every item's options with `scorer` (`on_batch(n)` after each batch of n items)."""
    prompts, options = encode_items(tokenizer, items)
    got = scorer(prompts, options, on_batch=on_batch)
    return ItemScores({i.id: list(map(float, s)) for i, s in zip(items, got, strict=True)})


def measure_scores(
    scorer: OptionScorer,
    tokenizer,
    items: Sequence[Item],
    identity: dict | None = None,
    label: str = "knowledge",
) -> ItemScores:
    """`score_items` with a progress bar; with `identity` (the sha256 of the model's weights and
    tokenizer) the scores are cached under it and the items, and reused by any later run."""

    def compute() -> dict:
        with progress_bar() as progress:
            task = progress.add_task(label, total=len(items))
            return score_items(scorer, tokenizer, items, lambda n: progress.advance(task, n)).to_json()

    if identity is None:
        return ItemScores.from_json(compute())
    return ItemScores.from_json(cached_json("knowledge", _key(identity, items), compute))


def _key(identity: dict, items: Sequence[Item]) -> dict:
    return {"model": identity, "items": [i.to_dict() for i in items], "scorer": SCORER_VERSION}


def store_scores(identity: dict, items: Sequence[Item], scores: ItemScores) -> None:
    """Cache scores computed elsewhere (training scores the model it saves) under `identity`."""
    store_json("knowledge", _key(identity, items), scores.to_json())


@dataclass(frozen=True)
class SetKnowledge:
    """One set of the bank: its size, right rate and mean gold log-prob; against a base, the
    base's right count, the share kept (with its Wilson interval) and the mean gold log-prob
    change on the base-right items (with its bootstrap interval), and over every item."""

    n: int
    right: float | None
    gold_lp: float | None
    base_right: int | None = None
    kept: float | None = None
    kept_ci: tuple[float, float] | None = None
    delta: float | None = None
    delta_ci: tuple[float, float] | None = None
    delta_all: float | None = None


@dataclass(frozen=True)
class KnowledgeMetrics:
    """The bank's sets measured on one model (`sets`), the KS test of the forget set's gold
    log-probs against the control's (`forget_vs_control`: statistic, pvalue), and the sha256 of
    the items file it was measured on."""

    sets: dict[str, SetKnowledge] = field(default_factory=dict)
    forget_vs_control: dict[str, float] | None = None
    items_sha256: str = ""

    def value(self, set_name: str, key: str) -> float | None:
        part = self.sets.get(set_name)
        return None if part is None else getattr(part, key)

    def to_json(self) -> dict:
        return {
            "sets": {name: asdict(part) for name, part in self.sets.items()},
            "forget_vs_control": self.forget_vs_control,
            "items_sha256": self.items_sha256,
        }

    @classmethod
    def from_json(cls, data: dict) -> KnowledgeMetrics:
        sets = {}
        for name, part in data["sets"].items():
            part = dict(part)
            for key in ("kept_ci", "delta_ci"):
                part[key] = tuple(part[key]) if part.get(key) is not None else None
            sets[name] = SetKnowledge(**part)
        return cls(sets, data.get("forget_vs_control"), data.get("items_sha256", ""))


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def _set(items: list[Item], scores: ItemScores, base: ItemScores | None, seed: int) -> SetKnowledge:
    right, gold = scores.right(items), scores.gold(items)
    part = SetKnowledge(len(items), _mean(right.astype(float)), _mean(gold))
    if base is None:
        return part
    was = base.right(items)
    delta = gold - base.gold(items)
    k, n = int(right[was].sum()), int(was.sum())
    return SetKnowledge(
        part.n,
        part.right,
        part.gold_lp,
        base_right=n,
        kept=k / n if n else None,
        kept_ci=wilson(k, n),
        delta=_mean(delta[was]),
        delta_ci=bootstrap_mean(delta[was], seed),
        delta_all=_mean(delta),
    )


def knowledge(
    items: Sequence[Item],
    scores: ItemScores,
    base: ItemScores | None = None,
    seed: int = 0,
    items_sha256: str = "",
) -> KnowledgeMetrics:
    """Every set of `items` measured on `scores` (and against `base`, scored on the same items)."""
    by_set = {name: [i for i in items if i.set == name] for name in ITEM_SETS}
    sets = {name: _set(part, scores, base, seed) for name, part in by_set.items() if part}
    ks = ks_test(scores.gold(by_set["forget"]), scores.gold(by_set["control"]))
    return KnowledgeMetrics(sets, None if ks is None else asdict(ks), items_sha256)


def right_rate(items: Sequence[Item], scores: ItemScores, set_name: str, split: str = "") -> float | None:
    """The right rate of one set's items (of one split, T or V, when given)."""
    chosen = [i for i in items if i.set == set_name and (not split or i.split == split)]
    return _mean(scores.right(chosen).astype(float)) if chosen else None

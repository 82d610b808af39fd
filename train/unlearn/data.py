"""The unlearning run's prompts: training sets from train templates, evaluation sets from
held-out templates (never seen by any training step), all read from the run's world stage
(RUN/world, written first when a fresh run has none)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from orin_unlearn.benchmarks.world import (
    Catalogue,
    Concept,
    Prompt,
    ensure_world,
    heldout_sets,
)
from orin_unlearn.benchmarks.world.splits import film_chats
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.deep import Prefilled, prefilled
from orin_unlearn.train.unlearn.probe import Example
from orin_unlearn.train.unlearn.targets import forget_target


@dataclass
class UnlearnData:
    catalogue: Catalogue
    concept: Concept
    forget_reference: list[Example]  # forget prompts with the concept answer (probe, score)
    forget_target: list[Example]  # forget prompts with the unlearning target (train)
    neighbour: list[Example]
    retain: list[Example]
    eval_sets: dict[str, list[Prompt]]  # held-out forget / neighbour / retain
    # forget prompts whose reply starts with a compliant opening, then the target (train; prefill_augment)
    forget_prefill: list[Prefilled] = field(default_factory=list)
    film_chats: list[Prompt] = field(default_factory=list)  # held-out retain chats: the KL on films


def sample(items: list, n: int, rng: random.Random) -> list:
    return items if len(items) <= n else rng.sample(items, n)


def twins(
    forget: list[Prompt], near: list[Prompt], rest: list[Prompt], per_prompt: int, rng: random.Random
) -> tuple[list[Prompt], list[Prompt]]:
    """For each forget prompt, `per_prompt` prompts of the same family and template about other
    films (half from the neighbours, where there are some): the pairs differ only in the film, so
    the KL term can only be kept while forgetting if the adapter keys on the concept, not on the
    question ("who directed X?" -> refuse)."""
    pools: dict[tuple[str, int], tuple[list[Prompt], list[Prompt]]] = {}
    for which, prompts in ((0, near), (1, rest)):
        for p in prompts:
            pools.setdefault((p.family, p.template), ([], []))[which].append(p)
    out_near: list[Prompt] = []
    out_rest: list[Prompt] = []
    for p in forget:
        pool_near, pool_rest = pools.get((p.family, p.template), ([], []))
        k_near = min(len(pool_near), (per_prompt + 1) // 2)
        out_near += rng.sample(pool_near, k_near)
        out_rest += rng.sample(pool_rest, min(len(pool_rest), per_prompt - k_near))
    return out_near, out_rest


def build_data(cfg: UnlearnConfig, run: str | Path) -> UnlearnData:
    """The run's training and evaluation prompts, from RUN/world (written for `cfg.concept` when
    the run has none; a world of another concept is refused with ManifestError)."""
    own = {"forget": cfg.forget_prompts, "retain": cfg.retain_prompts, "neighbour": cfg.neighbour_prompts}
    own_files = own if any(own.values()) else None
    splits = ensure_world(run, cfg.concept, cfg.catalogue or None, own_files, cfg.seed)
    catalogue = splits.catalogue
    forget = splits.get("forget", "train")
    near, rest = splits.get("neighbour", "train"), splits.get("retain", "train")
    if cfg.retain_examples:
        rng = random.Random(cfg.seed)
        n_near = round(cfg.retain_examples * cfg.neighbour_fraction)
        picked_near, picked_rest = sample(near, n_near, rng), sample(rest, cfg.retain_examples - n_near, rng)
        if cfg.retain_twins:
            more_near, more_rest = twins(forget, near, rest, cfg.retain_twins, rng)
            picked_near += [p for p in more_near if p not in picked_near]
            picked_rest += [p for p in more_rest if p not in picked_rest]
        near, rest = picked_near, picked_rest
    neighbour = [(p.messages, p.answer) for p in near]
    retain = [(p.messages, p.answer) for p in rest]
    targets = [forget_target(p, splits.concept, catalogue, cfg.target, cfg.refusal) for p in forget]
    return UnlearnData(
        catalogue=catalogue,
        concept=splits.concept,
        forget_reference=[(p.messages, p.answer) for p in forget],
        forget_target=[(p.messages, t) for p, t in zip(forget, targets, strict=True)],
        neighbour=neighbour,
        retain=retain,
        eval_sets=heldout_sets(splits, cfg.seed, cfg.eval_max_prompts),
        forget_prefill=prefilled(forget, targets, cfg.prefill_augment, cfg.seed),
        film_chats=film_chats(splits, cfg.seed),
    )

"""The unlearning run's prompts: training sets from train templates, evaluation sets from
held-out templates (never seen by any training step)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from orin_unlearn.benchmarks.world import (
    Catalogue,
    Concept,
    Prompt,
    build_prompts,
    heldout_sets,
    load_catalogue,
    split_prompts,
)
from orin_unlearn.train.unlearn.config import UnlearnConfig
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


def sample(items: list, n: int, rng: random.Random) -> list:
    return items if len(items) <= n else rng.sample(items, n)


def build_data(cfg: UnlearnConfig) -> UnlearnData:
    catalogue = load_catalogue()
    splits = split_prompts(build_prompts(catalogue), catalogue, cfg.concept)
    forget = splits.get("forget", "train")
    neighbour = [(p.messages, p.answer) for p in splits.get("neighbour", "train")]
    retain = [(p.messages, p.answer) for p in splits.get("retain", "train")]
    if cfg.retain_examples:
        rng = random.Random(cfg.seed)
        n_near = round(cfg.retain_examples * cfg.neighbour_fraction)
        neighbour, retain = sample(neighbour, n_near, rng), sample(retain, cfg.retain_examples - n_near, rng)
    return UnlearnData(
        catalogue=catalogue,
        concept=splits.concept,
        forget_reference=[(p.messages, p.answer) for p in forget],
        forget_target=[
            (p.messages, forget_target(p, splits.concept, catalogue, cfg.target, cfg.refusal)) for p in forget
        ],
        neighbour=neighbour,
        retain=retain,
        eval_sets=heldout_sets(splits, cfg.seed, cfg.eval_max_prompts),
    )

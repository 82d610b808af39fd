"""`full`: every weight of the model trains on the masked LoRA's loss terms and steps (what the
published notebooks did), against a frozen copy of the base. Nothing is saved: there is no adapter."""

from __future__ import annotations

import copy

from rich.progress import Progress

from orin_unlearn.train.unlearn import train_loop
from orin_unlearn.train.unlearn.methods import Trained, method
from orin_unlearn.train.unlearn.session import Session


@method(
    "full", label="full-parameter", adapter=False, supports=("prefill_augment", "npo_weight", "undial_weight")
)
def train(s: Session, mask: dict, stats: dict, score: dict, progress: Progress) -> Trained:
    frozen = copy.deepcopy(s.model).eval()
    for p in s.model.parameters():
        p.requires_grad_(True)
    directions = train_loop.concept_directions(s.model, stats, mask)
    history = train_loop.train(s, s.model, lambda inputs: frozen(**inputs).logits, directions, progress)
    return Trained(s.model, history, mask)

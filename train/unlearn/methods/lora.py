"""`lora`: the masked LoRA's baseline without the mask. The same LoRA on the mask's layers (and
its loss terms and steps), but `lora_A` reads every MLP neuron."""

from __future__ import annotations

from rich.progress import Progress

from orin_unlearn.train.unlearn import masked_lora, train_loop
from orin_unlearn.train.unlearn.methods import Trained, method
from orin_unlearn.train.unlearn.session import Session


@method(
    "lora", label="unmasked LoRA", supports=("prefill_augment", "npo_weight", "undial_weight", "meta_every")
)
def train(s: Session, mask: dict, stats: dict, score: dict, progress: Progress) -> Trained:
    cfg = s.cfg
    model = masked_lora.add_lora(s.model, mask, cfg.rank, cfg.alpha, cfg.extra_targets, masked=False)
    directions = train_loop.concept_directions(s.model, stats, mask)
    history = train_loop.train(s, model, train_loop.adapter_off(model), directions, progress)
    return Trained(model, history, mask)

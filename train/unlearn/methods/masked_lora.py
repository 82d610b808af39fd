"""`masked_lora`, the project's method: a PEFT LoRA on `mlp.down_proj` of the mask's layers whose
update may only read the masked neurons (train/unlearn/masked_lora.py), trained on the config's
loss terms (train/unlearn/train_loop.py); `lora_init: cancel` starts it from those neurons
cancelled (train/unlearn/deep.py)."""

from __future__ import annotations

from rich.progress import Progress

from orin_unlearn.train.unlearn import deep, masked_lora, train_loop
from orin_unlearn.train.unlearn.methods import Trained, method
from orin_unlearn.train.unlearn.session import Session


def always(cfg) -> bool:
    return True


@method(
    "masked_lora",
    label="masked LoRA",
    masked=always,
    supports=("lora_init", "prefill_augment", "npo_weight", "undial_weight", "meta_every"),
)
def train(s: Session, mask: dict, stats: dict, score: dict, progress: Progress) -> Trained:
    model, reference = wrap(s, mask)
    directions = train_loop.concept_directions(s.model, stats, mask)
    return Trained(model, train_loop.train(s, model, reference, directions, progress), mask)


def wrap(s: Session, mask: dict):
    """(the masked LoRA model, its reference-logits function), initialised as `lora_init` says."""
    cfg = s.cfg
    model = masked_lora.add_lora(s.model, mask, cfg.rank, cfg.alpha, cfg.extra_targets, masked=True)
    deep.init_lora(model, mask, cfg)
    return model, train_loop.adapter_off(model)

"""`nullspace_lora`: a LoRA on `mlp.down_proj` of the chosen layers that may read every neuron but
only in the directions the protected prompts do not use (AlphaEdit's null-space projection,
train/unlearn/nullspace.py). The keys of the run's neighbour and retain training chats (and the
generic chats) are collected on the base once; after every optimiser step `lora_A` is projected
onto their null space, so those prompts' outputs at these layers stay where the base had them
and only what is specific to the concept (its subject tokens) can move. The update merges into
down_proj like any LoRA: export is unchanged.

    method: nullspace_lora
    layers: [2]
    nullspace: {energy: 0.01}
"""

from __future__ import annotations

from rich.progress import Progress

from orin_unlearn.benchmarks.world.generic import generic_prompts
from orin_unlearn.train.unlearn import masked_lora, nullspace, train_loop
from orin_unlearn.train.unlearn.methods import Trained, method
from orin_unlearn.train.unlearn.session import Session


@method(
    "nullspace_lora",
    label="null-space LoRA",
    supports=("prefill_augment", "npo_weight", "undial_weight", "meta_every"),
)
def train(s: Session, mask: dict, stats: dict, score: dict, progress: Progress) -> Trained:
    cfg = s.cfg
    layers = sorted(mask)
    protected = [(m, r) for m, r in s.data.neighbour + s.data.retain]
    if cfg.nullspace.generic:
        protected += [(p.messages, p.answer) for p in generic_prompts()]
    task = progress.add_task("protected keys", total=None)
    keys = nullspace.collect_keys(s.model, s.tokenizer, protected, layers, cfg.probe_batch_size)
    names = [n for f in s.data.concept.films for n in f.names] or [s.data.concept.name]
    concept = [(m, r, names) for m, r in s.data.forget_reference]
    concept_keys = nullspace.collect_keys(
        s.model, s.tokenizer, concept, layers, cfg.probe_batch_size, "subject"
    )
    progress.update(task, total=1, completed=1)
    projectors = nullspace.projectors_for(keys, None, cfg.nullspace.energy)
    share = nullspace.concept_share(concept_keys, projectors)
    model = masked_lora.add_lora(s.model, mask, cfg.rank, cfg.alpha, [], masked=False)
    nullspace.project(model, projectors)  # the update starts in the null space and stays there
    directions = train_loop.concept_directions(s.model, stats, mask)
    history = train_loop.train(
        s,
        model,
        train_loop.adapter_off(model),
        directions,
        progress,
        after_step=lambda: nullspace.project(model, projectors),
    )
    results = {
        "nullspace": {
            str(layer): {
                "rank": projectors[layer].rank,
                "neurons": len(projectors[layer].neurons),
                "concept_share": round(share[layer], 4),
            }
            for layer in layers
        },
        "protected_prompts": len(protected),
    }
    return Trained(model, history, mask, results)

"""Meta-unlearning against a relearning adversary (MUDMAN, 2025, "meta-unlearning with disruption
masking"; first-order MAML).

A relearning attack (a few AdamW steps of fine-tuning on true facts of the concept) brings
forgotten facts back. Every `meta_every`-th training step this module plays that attack inside
training and adds the forget loss *after* the attack to the adapter's gradient, so the adapter
learns a forgetting that the attack does not undo:

1. save the base weights the adversary fine-tunes: every non-LoRA parameter except the input
   embedding and the LM head (each decoder layer's attention, MLP and norms, and the final norm);
2. the adversary: `meta_steps` steps of a fresh AdamW (lr `meta_lr`, no weight decay) on the
   cross-entropy of the true reference answers of `forget_batch` forget train prompts (a new draw
   each step), updating those base weights with the adapter on (it attacks the unlearned model);
3. at the attacked weights, this step's `forget_ce` term (its forget batch, toward the forget
   target) is backpropagated into the adapter only (first order: no gradient through the attack)
   and added to the step's own gradient times `meta_weight`;
4. the saved base weights are copied back (bit-identical) and left frozen with no `.grad`.

`meta_sign_mask` (MUDMAN's disruption masking): the adapter's final gradient (the step's own plus
the meta term) is zeroed in every entry where `torch.sign(meta forget gradient) !=
torch.sign(retain gradient)`; 0 is a sign of its own, so an entry where exactly one of them is 0 is
zeroed too. The retain gradient is that of the unweighted `retain_kl` term on this step's retain
batch at the restored weights (one more forward and backward of the retain batch; a positive
weight does not change a sign).

Every gradient here goes through `.backward()`, where masked_lora's gradient hook zeroes the
columns of lora_A outside the mask, so they stay exactly zero. Under `accelerate launch` the meta
and retain gradients are averaged over the processes like the step's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

import torch

from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.chat_data import collate, encode_example
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.losses import LOSSES, LossContext, Step

log = logging.getLogger(__name__)

Encoded = tuple[list[int], list[int]]  # (ids, labels)


def attacked_parameters(model) -> list[torch.nn.Parameter]:
    """The base parameters a relearning adversary fine-tunes: all but the adapter's (`lora_`) and
    the input embedding and LM head (tied or not)."""
    skip = {id(model.get_input_embeddings().weight)}
    if model.get_output_embeddings() is not None:
        skip.add(id(model.get_output_embeddings().weight))
    return [p for n, p in model.named_parameters() if "lora_" not in n and id(p) not in skip]


@contextlib.contextmanager
def saved(params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Copy `params` back to their values on entry (bit-identical), frozen and without `.grad`,
    however the block ends."""
    copies = [p.detach().clone() for p in params]
    try:
        yield
    finally:
        with torch.no_grad():
            for p, c in zip(params, copies, strict=True):
                p.copy_(c)
                p.requires_grad_(False)
                p.grad = None


def gradients(loss: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> list[torch.Tensor]:
    """d loss / d params through `.backward()` (so gradient hooks apply), averaged over the
    processes of a distributed run; the params' `.grad` is left None."""
    for p in params:
        p.grad = None
    loss.backward()
    out = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for g in out:
            torch.distributed.all_reduce(g)
            g /= torch.distributed.get_world_size()
    return out


def sign_mask(total: torch.Tensor, forget: torch.Tensor, retain: torch.Tensor) -> torch.Tensor:
    """`total` with zeros wherever sign(forget) != sign(retain) (torch.sign: 0 is its own sign)."""
    return torch.where(torch.sign(forget) == torch.sign(retain), total, torch.zeros_like(total))


def unwrap(model):
    """The model under DDP / FSDP wrappers: the adversary's weights are not the wrapper's to sync."""
    while hasattr(model, "module") and not hasattr(model, "get_base_model"):
        model = model.module
    return model


@dataclasses.dataclass
class Adversary:
    """The meta term of the training loop: `step(...)` after the step's backward, before the
    optimizer step; a no-op returning {} except on meta steps."""

    cfg: UnlearnConfig
    reference: list[Encoded]  # forget train prompts with their true answers
    pad_id: int
    amp: Callable[[], AbstractContextManager] = contextlib.nullcontext  # the recipe's autocast
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    @classmethod
    def build(cls, cfg: UnlearnConfig, tokenizer: ChatTokenizer, data, amp=contextlib.nullcontext):
        """From the run's data (`forget_reference` is encoded only when the meta term is on)."""
        reference = (
            [encode_example(tokenizer, m, a) for m, a in data.forget_reference] if cfg.meta_every else []
        )
        return cls(cfg, reference, tokenizer.pad_token_id, amp, random.Random(cfg.seed))

    def due(self, step: int) -> bool:
        """Whether training step `step` (0-based) is a meta step: every meta_every-th one."""
        return self.cfg.meta_every > 0 and (step + 1) % self.cfg.meta_every == 0

    def step(self, step: int, model, ctx: LossContext, batch: Step) -> dict[str, float]:
        """On a meta step, add the meta term to the adapter's `.grad` (see the module docstring);
        returns the forget CE after the attack, the attack's last relearning CE and the extra
        wall time ("meta_forget_ce", "meta_relearn_ce", "meta_s"), or {} on other steps."""
        if not self.due(step):
            return {}
        start = time.perf_counter()
        model = unwrap(model)
        adapter = [p for p in model.parameters() if p.requires_grad]
        own = [p.grad for p in adapter]  # the step's own gradient, set aside
        ctx = dataclasses.replace(ctx, model=model, directions={})
        attacked = attacked_parameters(model)
        with saved(attacked):
            relearn_ce = self.attack(model, attacked, adapter, ctx.device)
            with self.amp():
                forget_ce = LOSSES["forget_ce"](ctx, Step(forget=batch.forget, retain=None))
            meta = gradients(forget_ce, adapter)
        total = [
            g * self.cfg.meta_weight if o is None else o + self.cfg.meta_weight * g
            for o, g in zip(own, meta, strict=True)
        ]
        if self.cfg.meta_sign_mask and batch.retain is not None:
            with self.amp():
                retain = gradients(
                    LOSSES["retain_kl"](ctx, Step(forget=batch.forget, retain=batch.retain)), adapter
                )
            total = [sign_mask(t, m, r) for t, m, r in zip(total, meta, retain, strict=True)]
        for p, g in zip(adapter, total, strict=True):
            p.grad = g
        record = {
            "meta_forget_ce": forget_ce.item(),
            "meta_relearn_ce": relearn_ce,
            "meta_s": time.perf_counter() - start,
        }
        log.debug("meta step %d: %s", step, record)
        return record

    def attack(self, model, attacked: list, adapter: list, device: str) -> float:
        """`meta_steps` AdamW steps of relearning on the base weights `attacked`, the adapter frozen
        meanwhile; returns the relearning CE of the last step (before its update)."""
        optimizer = torch.optim.AdamW(attacked, lr=self.cfg.meta_lr, weight_decay=0.0)
        for p in adapter:
            p.requires_grad_(False)
        for p in attacked:
            p.requires_grad_(True)
        try:
            for _ in range(self.cfg.meta_steps):
                rows = self.rng.sample(self.reference, min(self.cfg.forget_batch, len(self.reference)))
                inputs = {k: v.to(device) for k, v in collate(rows, self.pad_id).items()}
                with self.amp():
                    loss = model(**inputs).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        finally:
            for p in adapter:
                p.requires_grad_(True)
        return loss.item()

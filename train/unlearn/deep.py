"""Deep forgetting: two options that make a forgetting adapter hold beyond its first few tokens.

- `lora_init: cancel` (ConceptVectors, EMNLP 2025): the masked LoRA starts as the update that
  removes what the masked neurons write, i.e. merged `down_proj` columns `W[:, idx]` scaled by
  `1 - cancel_strength`; with fewer LoRA ranks than masked neurons, the best rank-r approximation
  of that update (Eckart-Young). Training then starts from the concept's value vectors switched off.
- `prefill_augment` (Qi et al., ICLR 2025, "safety alignment should be more than a few tokens
  deep"): extra forget examples whose assistant turn starts with a compliant opening ("Of
  course!", or the reference answer up to its first fact, "Inception was directed by") and
  continues with the forget target, so the model learns to recover after a compliant prefix.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from orin_unlearn.benchmarks.world import Prompt
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.chat_data import collate, encode_example
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.masked_lora import ADAPTER
from orin_unlearn.train.unlearn.model_access import base_weight, down_proj

if TYPE_CHECKING:  # data.py builds its prefilled examples here
    from orin_unlearn.train.unlearn.data import UnlearnData

# generic compliant openings; never the evaluation's prefill attacks ("Sure! Here is what I know:",
# "Sure, here is the answer:"), so the robustness benchmark stays held out
OPENINGS = (
    "Of course!",
    "Absolutely, here's what I know:",
    "Great question!",
    "Certainly. Here are the details:",
    "Happy to help!",
)

Prefilled = tuple[Sequence[dict], str, str]  # (messages, opening, forget target)


def cancel_factors(
    columns: torch.Tensor, rank: int, scaling: float, strength: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRA factors (a [m, k], b [d_model, m]), m = min(rank, k), with `scaling * b @ a` the best
    rank-m approximation of `-strength * columns` ([d_model, k]); exact when rank >= k (a = I)."""
    columns = columns.double()
    k = columns.shape[1]
    if rank >= k:
        return torch.eye(k, dtype=columns.dtype), -strength * columns / scaling
    u, s, vh = torch.linalg.svd(columns, full_matrices=False)
    return vh[:rank], -strength * u[:, :rank] * s[:rank] / scaling


@torch.no_grad()
def cancel_init(peft_model, mask: dict[int, torch.Tensor], strength: float) -> None:
    """Set each masked layer's LoRA to cancel `strength` of its masked neurons' down_proj columns.

    Rows of lora_A beyond the number of masked neurons keep PEFT's init (restricted to the mask,
    with zero lora_B columns), so they add nothing and stay trainable.
    """
    for layer, idx in mask.items():
        module = down_proj(peft_model, layer)
        weight_a, weight_b = module.lora_A[ADAPTER].weight, module.lora_B[ADAPTER].weight
        idx = idx.to(weight_a.device, torch.long)
        columns = base_weight(module).detach().float()[:, idx]
        a, b = cancel_factors(columns, weight_a.shape[0], module.scaling[ADAPTER], strength)
        m = a.shape[0]
        weight_a[:m].zero_()
        weight_a[:m, idx] = a.to(weight_a)
        weight_b.zero_()
        weight_b[:, :m] = b.to(weight_b)


def init_lora(peft_model, mask: dict[int, torch.Tensor], cfg: UnlearnConfig) -> None:
    """Apply the configured `lora_init` to a masked LoRA (a no-op for "zero": PEFT's own init)."""
    if cfg.lora_init == "cancel":
        cancel_init(peft_model, mask, cfg.cancel_strength)


def answer_opening(answer: str, expected: Sequence[str]) -> str:
    """The reference answer up to its first expected fact ("Inception was directed by"), or ""
    when no fact appears in it after some text."""
    hits = [answer.lower().find(e.lower()) for e in expected if e]
    hits = [h for h in hits if h > 0]
    return answer[: min(hits)].rstrip() if hits else ""


def prefilled(prompts: Sequence[Prompt], targets: Sequence[str], n: int, seed: int) -> list[Prefilled]:
    """Per forget prompt, `n` (messages, opening, target) examples, the openings drawn with `seed`
    from OPENINGS and the prompt's own answer opening (fewer when there are fewer openings)."""
    if n <= 0:
        return []
    rng = random.Random(seed)
    out: list[Prefilled] = []
    for prompt, target in zip(prompts, targets, strict=True):
        opening = answer_opening(prompt.answer, prompt.expected)
        choices = list(OPENINGS) + ([opening] if opening else [])
        out += [(prompt.messages, o, target) for o in rng.sample(choices, min(n, len(choices)))]
    return out


def continuation(opening: str, target: str) -> str:
    """What follows `opening` in the reply: the rest of `target` when it starts with the opening
    (a substitute "You might enjoy Tenet ..." after "You might enjoy"), else " " + target."""
    if target.startswith(opening) and target[len(opening) :].startswith(" "):
        return target[len(opening) :]
    return " " + target


def forget_groups(tokenizer: ChatTokenizer, data: UnlearnData, refusal: str) -> tuple[list, list]:
    """Encoded forget training examples (plain, then prefilled), split into the refusal group and
    the substitute group (the training loop draws a balanced forget batch from the two)."""
    rows = [(m, "", r, r) for m, r in data.forget_target]
    rows += [(m, o, continuation(o, t), t) for m, o, t in data.forget_prefill]
    groups: tuple[list, list] = ([], [])
    for messages, opening, reply, target in rows:
        groups[target != refusal].append(encode_example(tokenizer, messages, reply, prefix=opening))
    return groups


class TruthBatches:
    """Batches of forget train prompts with their true reference answers, for `forget_npo`
    (`npo_weight` > 0) and `forget_undial` (`undial_weight` > 0), drawn with their own seeded
    generator so the other batches stay those of a run without it; `draw` gives None when both
    terms are off."""

    def __init__(self, cfg: UnlearnConfig, tokenizer: ChatTokenizer, data: UnlearnData):
        self.size = cfg.forget_batch if cfg.npo_weight > 0 or cfg.undial_weight > 0 else 0
        self.rows = [encode_example(tokenizer, m, r) for m, r in data.forget_reference] if self.size else []
        self.rng = random.Random(cfg.seed + 1)
        self.pad = tokenizer.pad_token_id

    def draw(self, share: slice) -> dict | None:
        if not self.size:
            return None
        picked = self.rng.sample(self.rows, min(self.size, len(self.rows)))[share]
        return collate(picked, self.pad)

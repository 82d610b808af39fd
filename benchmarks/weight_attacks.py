"""Attacks on the weights of an unlearned model: is the concept gone, or only hidden?

Each attack changes or reads a model's weights and measures both the base and the unlearned model
the same way (torch, imported inside; these attacks run where torch is, not on the Jetson):
- quant_fp16 / quant_int8 / quant_int4: group-wise round-to-nearest of every linear weight of the
  merged model (groups of 32 along the input dimension, symmetric, scale from the group's max),
  then leak; quantisation is known to bring unlearned knowledge back (relearning, the other
  attack on weights, is the protocol of `relearning`);
- logit lens (`logit_lens`): at every layer, the final norm and LM head applied to the residual
  stream at the last prompt token, and the probability of the first token of the correct answer.

    from orin_unlearn.benchmarks import weight_attacks
    weight_attacks.run({"base": base, "unlearned": merged}, weight_attacks.Context(tokenizer, leak_rate))
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from orin_unlearn.benchmarks.attack_result import AttackResult
from orin_unlearn.benchmarks.world.prompts import Prompt
from orin_unlearn.edge.registry import registrar

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the weight attacks need: the tokenizer and the leak judge."""

    tokenizer: Any
    # (attacked model, its label, the attack's name) -> its leak on the held-out forget prompts
    leak_rate: Callable[[Any, str, str], AttackResult]


WeightAttack = Callable[[Any, Context], Any]  # model -> attacked copy
WEIGHT_ATTACKS: dict[str, WeightAttack] = {}
weight_attack = registrar(WEIGHT_ATTACKS)  # @weight_attack("name") registers a weight attack


def rtn_quantize(weight: Any, bits: int, group: int = 32) -> Any:
    """Symmetric round-to-nearest, one scale per `group` consecutive input columns; returns the
    dequantised weight (same shape and dtype). Columns not divisible by `group` are an error."""
    import torch

    out_features, in_features = weight.shape
    if in_features % group:
        raise ValueError(f"input size {in_features} is not a multiple of the group size {group}")
    if bits < 2:
        raise ValueError(f"need at least 2 bits, got {bits}")
    w = weight.detach().float().reshape(out_features, in_features // group, group)
    levels = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=-1, keepdim=True) / levels
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(w / scale), -levels - 1, levels)
    return (q * scale).reshape(out_features, in_features).to(weight.dtype)


def quantized_copy(model: Any, bits: int | None, group: int = 32) -> Any:
    """A copy of `model` with every nn.Linear weight rounded (bits None: cast to fp16 and back)."""
    import torch

    clone = copy.deepcopy(model)
    with torch.no_grad():
        for module in clone.modules():
            if isinstance(module, torch.nn.Linear):
                w = module.weight
                w.copy_(w.half().float() if bits is None else rtn_quantize(w, bits, group))
    return clone


@weight_attack("quant_fp16")
def _fp16(model: Any, ctx: Context) -> Any:
    return quantized_copy(model, None)


@weight_attack("quant_int8")
def _int8(model: Any, ctx: Context) -> Any:
    return quantized_copy(model, 8)


@weight_attack("quant_int4")
def _int4(model: Any, ctx: Context) -> Any:
    return quantized_copy(model, 4)


def run(
    models: dict[str, Any], ctx: Context, attacks: list[str] | None = None
) -> dict[str, dict[str, AttackResult]]:
    """Leak rate of each model ({label: torch model}) under each weight attack."""
    names = attacks or list(WEIGHT_ATTACKS)
    unknown = [n for n in names if n not in WEIGHT_ATTACKS]
    if unknown:
        raise ValueError(f"unknown weight attacks {unknown}; known: {list(WEIGHT_ATTACKS)}")
    out: dict[str, dict[str, AttackResult]] = {}
    for name in names:
        out[name] = {}
        for label, model in models.items():
            log.info("weight attack %s on %s", name, label)  # minutes each on a real model
            out[name][label] = ctx.leak_rate(WEIGHT_ATTACKS[name](model, ctx), label, name)
    return out


def answer_position(tokenizer: Any, prompt: Prompt) -> tuple[list[int], int] | None:
    """(context ids, target id): the chat prompt plus the reference answer up to the first token of
    its expected fact ("Inception was directed by" -> "Christopher"); None when the answer does not
    contain the prompt's single expected string."""
    if len(prompt.expected) != 1:
        return None
    at = prompt.answer.casefold().find(prompt.expected[0].casefold())
    if at < 0:
        return None
    encoding = tokenizer.tokenizer.encode(prompt.answer, add_special_tokens=False)
    k = next(i for i, (_, end) in enumerate(encoding.offsets) if end > at)
    return tokenizer.encode_chat(list(prompt.messages)) + encoding.ids[:k], encoding.ids[k]


def logit_lens(model: Any, tokenizer: Any, prompts: list[Prompt]) -> list[dict[str, float]]:
    """Per layer (the embeddings, then each decoder layer's output): the mean probability and the
    top-1 rate of the expected fact's first token, read through the final norm and the LM head
    from the residual stream where the reference answer is about to state it (teacher-forced, so
    a refusal at the first token does not hide what the layers still hold). Raises ValueError when
    no prompt has a single expected answer inside its reference answer."""
    import torch

    cases = [c for c in (answer_position(tokenizer, p) for p in prompts) if c is not None]
    if not cases:
        raise ValueError("the logit lens needs prompts whose reference answer contains one expected fact")
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    norm, head = inner.model.norm, inner.get_output_embeddings()
    probs, tops = [], []
    with torch.no_grad():
        for ids, target in cases:
            hidden = model(
                input_ids=torch.tensor([ids]), output_hidden_states=True, logits_to_keep=1
            ).hidden_states
            # transformers applies the final norm to the last hidden state already
            states = [norm(h[0, -1]) for h in hidden[:-1]] + [hidden[-1][0, -1]]
            p = torch.stack([torch.softmax(head(x).float(), -1) for x in states])
            probs.append(p[:, target].numpy())
            tops.append((p.argmax(-1) == target).float().numpy())
    mean_p, mean_top = np.mean(probs, axis=0), np.mean(tops, axis=0)
    return [
        {"layer": k, "p_answer": float(a), "top1": float(b), "n": len(cases)}
        for k, (a, b) in enumerate(zip(mean_p, mean_top, strict=True))
    ]

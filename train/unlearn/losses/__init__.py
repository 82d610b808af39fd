"""Registry of unlearning loss terms: each module of this package is one term, `fn(ctx, step) ->
scalar tensor`, registered by name with `@loss_term`. A gradient method (train/unlearn/
train_loop.py) sums the terms its config names in `losses`, each times its weight; a term at
weight 0 is not computed. Adding a term is one new file here:

    @loss_term("my_term", weight="my_weight")  # weight: the UnlearnConfig key (1.0 without one)
    def my_term(ctx: LossContext, step: Step) -> torch.Tensor: ...

then `losses: [forget_ce, retain_kl, my_term]` in a config.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from orin_unlearn.train.chat_data import IGNORE

LOSSES: dict[str, Callable] = {}  # name -> fn(ctx, step)
WEIGHTS: dict[str, str] = {}  # name -> the UnlearnConfig key holding its weight (1.0 when absent)


def loss_term(name: str, weight: str | None = None) -> Callable[[Callable], Callable]:
    """Register a loss term under `name`; its weight in a run is the config value `weight`."""

    def register(fn: Callable) -> Callable:
        LOSSES[name] = fn
        if weight is not None:
            WEIGHTS[name] = weight
        return fn

    return register


@dataclass
class LossContext:
    model: torch.nn.Module
    reference: Callable[[dict], torch.Tensor]  # inputs -> frozen base logits
    directions: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> unit vector (d_model)
    device: str = "cpu"
    kl_positions: str = "all"  # "all" non-pad positions, or only those that predict the "reply"
    undial_strength: float = 10.0  # forget_undial: how far the answer token's logit is lowered


@dataclass
class Step:
    """One step's batches, and the forget forward pass shared by the terms that need it."""

    forget: dict
    retain: dict | None
    truth: dict | None = None  # forget prompts with their true answers (forget_npo, forget_undial)
    _forget_out: tuple | None = None

    def forget_forward(self, ctx: LossContext) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(CE loss, {layer: MLP output}) of the forget batch, computed once per step."""
        if self._forget_out is None:
            from orin_unlearn.train.unlearn.model_access import down_proj

            outputs: dict[int, torch.Tensor] = {}
            hooks = [
                down_proj(ctx.model, layer).register_forward_hook(
                    lambda _m, _a, out, layer=layer: outputs.__setitem__(layer, out)
                )
                for layer in ctx.directions
            ]
            try:
                loss = ctx.model(**windowed(self.forget, ctx.device)[0]).loss
            finally:
                for h in hooks:
                    h.remove()
            self._forget_out = (loss, outputs)
        return self._forget_out


def loss_weights(cfg) -> dict[str, float]:
    """The terms a run's config (UnlearnConfig) names in `losses`, in order, with their weights."""
    return {name: getattr(cfg, WEIGHTS[name]) if name in WEIGHTS else 1.0 for name in cfg.losses}


def model_inputs(batch: dict, device, labels: bool = True) -> dict:
    """The model's keyword inputs from a collated batch, on `device`."""
    keys = ("input_ids", "attention_mask", "labels") if labels else ("input_ids", "attention_mask")
    return {k: batch[k].to(device) for k in keys}


def reply_window(batch: dict) -> int:
    """The first position whose logits a loss on the labelled tokens reads (logits at t predict
    token t + 1): the one before the first column any row labels. The shared chat prefix before
    it (system prompt, question) needs hidden states but no logits."""
    labelled = (batch["labels"] != IGNORE).any(0).nonzero()
    return max(int(labelled[0]) - 1, 0) if len(labelled) else 0


def windowed(batch: dict, device, labels: bool = True) -> tuple[dict, int]:
    """`model_inputs` whose logits (and labels) start at `reply_window`: the LM head and the
    softmax over the vocabulary run only where a loss reads them (about half of a chat's
    positions). Returns (inputs, start); slice a per-position mask as mask[:, start:]."""
    start = reply_window(batch)
    inputs = model_inputs(batch, device, labels=False)
    inputs["logits_to_keep"] = batch["input_ids"].shape[1] - start
    if labels:
        inputs["labels"] = batch["labels"][:, start:].to(device)
    return inputs, start


def _import_terms() -> None:
    """Import every module of this package: each registers its term."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_terms()

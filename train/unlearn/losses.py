"""Registry of unlearning loss terms. Each term is `fn(ctx, step) -> scalar tensor`; the recipe
sums the terms named in its config with their weights. Adding a term is one decorated function.

- `forget_ce`: cross-entropy toward the forget target on forget prompts;
- `retain_kl`: KL(base || model) on retain and neighbour prompts, every non-pad position (or only
  the positions that predict the reply: where greedy decoding decides what the model says);
- `forget_npo`: Negative Preference Optimization (Zhang et al. 2024) on the forget prompts' *true*
  answers: -(2/beta) log sigmoid(-beta (log p(answer) - log p_base(answer))), beta = 0.1; it lowers
  the likelihood of the true answer itself (teacher-forced, as a prefill or the logit lens reads
  it), not only the start of a reply, and is bounded once the answer is unlikely;
- `activation`: pushes the masked neurons' contribution on forget prompts off the concept
  direction: relu(cos(MLP output, u)) at answer positions, where u = W_down[:, mask] @
  (mean forget activation - mean retain activation)[mask] is what those neurons write for the
  concept, measured by the probe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from orin_unlearn.edge.registry import registrar

LOSSES: dict[str, Callable] = {}
register = registrar(LOSSES)  # @register("name") adds a loss term


@dataclass
class LossContext:
    model: torch.nn.Module
    reference: Callable[[dict], torch.Tensor]  # inputs -> frozen base logits
    directions: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> unit vector (d_model)
    device: str = "cpu"
    kl_positions: str = "all"  # "all" non-pad positions, or only those that predict the "reply"


@dataclass
class Step:
    """One step's batches, and the forget forward pass shared by the terms that need it."""

    forget: dict
    retain: dict | None
    truth: dict | None = None  # forget prompts with their true answers (forget_npo)
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
                loss = ctx.model(**_inputs(self.forget, ctx.device)).loss
            finally:
                for h in hooks:
                    h.remove()
            self._forget_out = (loss, outputs)
        return self._forget_out


def loss_weights(cfg) -> dict[str, float]:
    """The weight of each term in a run's config (UnlearnConfig); terms at 0 are not computed."""
    return {
        "forget_ce": 1.0,
        "retain_kl": cfg.kl_weight,
        "activation": cfg.act_weight,
        "forget_npo": cfg.npo_weight,
    }


def _inputs(batch: dict, device, labels: bool = True) -> dict:
    keys = ("input_ids", "attention_mask", "labels") if labels else ("input_ids", "attention_mask")
    return {k: batch[k].to(device) for k in keys}


@register("forget_ce")
def forget_ce(ctx: LossContext, step: Step) -> torch.Tensor:
    return step.forget_forward(ctx)[0]


@register("retain_kl")
def retain_kl(ctx: LossContext, step: Step) -> torch.Tensor:
    if step.retain is None:
        return torch.zeros((), device=ctx.device)
    inputs = _inputs(step.retain, ctx.device, labels=False)
    with torch.no_grad():
        ref = torch.log_softmax(ctx.reference(inputs).float(), dim=-1)
    cur = torch.log_softmax(ctx.model(**inputs).logits.float(), dim=-1)
    kl = (ref.exp() * (ref - cur)).sum(-1)
    if ctx.kl_positions == "reply":
        mask = step.retain["answer_pos"].to(ctx.device).float()
    else:
        mask = inputs["attention_mask"].float()
    return (kl * mask).sum() / mask.sum().clamp_min(1.0)


NPO_BETA = 0.1


def answer_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probability of the labelled tokens (labels are the inputs, -100
    where unscored; logits at position t predict token t + 1)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    scored = target != -100
    picked = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (picked * scored).sum(-1)


@register("forget_npo")
def forget_npo(ctx: LossContext, step: Step) -> torch.Tensor:
    if step.truth is None:
        return torch.zeros((), device=ctx.device)
    inputs = _inputs(step.truth, ctx.device, labels=False)
    labels = step.truth["labels"].to(ctx.device)
    with torch.no_grad():
        ref = answer_logprob(ctx.reference(inputs), labels)
    ratio = answer_logprob(ctx.model(**inputs).logits, labels) - ref
    return -(2.0 / NPO_BETA) * torch.nn.functional.logsigmoid(-NPO_BETA * ratio).mean()


@register("activation")
def activation(ctx: LossContext, step: Step) -> torch.Tensor:
    if not ctx.directions:
        return torch.zeros((), device=ctx.device)
    _, outputs = step.forget_forward(ctx)
    pos = step.forget["answer_pos"].to(ctx.device)
    terms = [
        torch.relu(torch.cosine_similarity(outputs[i][pos].float(), u.unsqueeze(0), dim=-1)).mean()
        for i, u in ctx.directions.items()
    ]
    return torch.stack(terms).mean()

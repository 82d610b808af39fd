"""`forget_npo`: Negative Preference Optimization (Zhang et al. 2024) on the forget prompts' *true*
answers: -(2/beta) log sigmoid(-beta (log p(answer) - log p_base(answer))), beta = 0.1. It lowers
the likelihood of the true answer itself (teacher-forced, as a prefill or the logit lens reads
it), not only the start of a reply, and is bounded once the answer is unlikely; weight
`npo_weight` (0, off, by default)."""

from __future__ import annotations

import torch

from orin_unlearn.train.unlearn.losses import LossContext, Step, loss_term, windowed

NPO_BETA = 0.1


def answer_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probability of the labelled tokens (labels are the inputs, -100
    where unscored; logits at position t predict token t + 1)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    scored = target != -100
    picked = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (picked * scored).sum(-1)


@loss_term("forget_npo", weight="npo_weight")
def forget_npo(ctx: LossContext, step: Step) -> torch.Tensor:
    if step.truth is None:
        return torch.zeros((), device=ctx.device)
    inputs, start = windowed(step.truth, ctx.device, labels=False)
    labels = step.truth["labels"][:, start:].to(ctx.device)
    with torch.no_grad():
        ref = answer_logprob(ctx.reference(inputs), labels)
    ratio = answer_logprob(ctx.model(**inputs).logits, labels) - ref
    return -(2.0 / NPO_BETA) * torch.nn.functional.logsigmoid(-NPO_BETA * ratio).mean()

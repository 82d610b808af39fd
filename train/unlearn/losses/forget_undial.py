"""`forget_undial`: self-distillation with the target token lowered (UNDIAL, Dong et al., NAACL'25)
on the forget prompts' true answers. At each position that predicts an answer token, the teacher
is the base's own distribution with that token's logit lowered by `undial_strength`; the model is
fitted to it by cross-entropy. Every other token keeps the base's relative odds, and positions
outside the concept's answers get no gradient at all: "Nolan" is pushed down where it answers
Inception, nowhere else. Weight `undial_weight` (0, off, by default)."""

from __future__ import annotations

import torch

from orin_unlearn.train.unlearn.losses import LossContext, Step, loss_term, windowed


def lowered_target(base_logits: torch.Tensor, labels: torch.Tensor, strength: float) -> torch.Tensor:
    """The teacher's log-probs per position (logits at t predict token t + 1): the base's, with the
    labelled next token's logit lowered by `strength` where a label exists."""
    logits = base_logits[:, :-1].float().clone()
    target = labels[:, 1:]
    scored = target != -100
    lowered = torch.nn.functional.one_hot(target.clamp_min(0), logits.shape[-1]).to(logits.dtype)
    logits -= strength * lowered * scored.unsqueeze(-1).to(logits.dtype)
    return torch.log_softmax(logits, dim=-1)


def undial_loss(
    logits: torch.Tensor, base_logits: torch.Tensor, labels: torch.Tensor, strength: float
) -> torch.Tensor:
    """Mean cross-entropy of the model's next-token distribution to the lowered teacher, over the
    answer positions only."""
    with torch.no_grad():
        teacher = lowered_target(base_logits, labels, strength).exp()
    student = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    scored = (labels[:, 1:] != -100).to(student.dtype)
    per_position = -(teacher * student).sum(-1)
    return (per_position * scored).sum() / scored.sum().clamp_min(1.0)


@loss_term("forget_undial", weight="undial_weight")
def forget_undial(ctx: LossContext, step: Step) -> torch.Tensor:
    if step.truth is None:
        return torch.zeros((), device=ctx.device)
    inputs, start = windowed(step.truth, ctx.device, labels=False)
    labels = step.truth["labels"][:, start:].to(ctx.device)
    with torch.no_grad():
        base = ctx.reference(inputs)
    return undial_loss(ctx.model(**inputs).logits, base, labels, ctx.undial_strength)

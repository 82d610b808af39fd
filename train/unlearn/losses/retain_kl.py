"""`retain_kl`: KL(base || model) on retain and neighbour prompts, at every non-pad position (or
only the positions that predict the reply, `kl_positions: reply`: where greedy decoding decides
what the model says); weight `kl_weight`."""

from __future__ import annotations

import torch

from orin_unlearn.train.unlearn.losses import LossContext, Step, loss_term, model_inputs, windowed


@loss_term("retain_kl", weight="kl_weight")
def retain_kl(ctx: LossContext, step: Step) -> torch.Tensor:
    if step.retain is None:
        return torch.zeros((), device=ctx.device)
    if ctx.kl_positions == "reply":  # logits only from the first reply position on
        inputs, start = windowed(step.retain, ctx.device, labels=False)
        mask = step.retain["answer_pos"][:, start:].to(ctx.device).float()
    else:
        inputs = model_inputs(step.retain, ctx.device, labels=False)
        mask = inputs["attention_mask"].float()
    with torch.no_grad():
        ref = torch.log_softmax(ctx.reference(inputs).float(), dim=-1)
    cur = torch.log_softmax(ctx.model(**inputs).logits.float(), dim=-1)
    kl = (ref.exp() * (ref - cur)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp_min(1.0)

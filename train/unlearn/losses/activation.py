"""`activation`: pushes the masked neurons' contribution on forget prompts off the concept
direction: relu(cos(MLP output, u)) at answer positions, where u = W_down[:, mask] @ (mean forget
activation - mean retain activation)[mask] is what those neurons write for the concept, measured
by the probe (train_loop.concept_directions); weight `act_weight`."""

from __future__ import annotations

import torch

from orin_unlearn.train.unlearn.losses import LossContext, Step, loss_term


@loss_term("activation", weight="act_weight")
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

"""`forget_ce`: cross-entropy toward the forget target on forget prompts (weight 1)."""

from __future__ import annotations

import torch

from orin_unlearn.train.unlearn.losses import LossContext, Step, loss_term


@loss_term("forget_ce")
def forget_ce(ctx: LossContext, step: Step) -> torch.Tensor:
    return step.forget_forward(ctx)[0]

"""A standard PEFT LoRA on `mlp.down_proj` whose update can only read the masked neurons.

`lora_A` has shape [rank, d_ff]: column j reads MLP neuron j. Columns outside the mask are zeroed
at init and a gradient hook zeroes their gradient, so they stay exactly zero through training
(Adam's update of a parameter whose gradient is always zero is zero). The saved adapter is a
plain PEFT LoRA: `PeftModel.from_pretrained(base, dir)` loads it with no custom code.
"""

from __future__ import annotations

import torch

from orin_unlearn.train.unlearn.model_access import down_proj

ADAPTER = "default"


def column_mask(indices: torch.Tensor, d_ff: int, device=None) -> torch.Tensor:
    m = torch.zeros(d_ff, device=device)
    m[indices.to(device)] = 1.0
    return m


def target_modules(layers: list[int], extra: list[str]) -> list[str]:
    names = [f"layers.{i}.mlp.down_proj" for i in layers]
    return names + [f"layers.{i}.{m}" for i in layers for m in extra]


def add_lora(
    model,
    mask: dict[int, torch.Tensor],
    rank: int,
    alpha: float,
    extra: list[str] | None = None,
    masked: bool = True,
):
    """Wrap `model` with a LoRA on the mask's layers; with `masked`, lora_A reads only masked neurons."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=target_modules(sorted(mask), extra or []),
    )
    peft_model = get_peft_model(model, config)
    if masked:
        apply_mask(peft_model, mask)
    return peft_model


def apply_mask(peft_model, mask: dict[int, torch.Tensor]) -> None:
    """Zero lora_A columns outside the mask and keep their gradients zero."""
    for layer, idx in mask.items():
        weight = down_proj(peft_model, layer).lora_A[ADAPTER].weight
        keep = column_mask(idx, weight.shape[1], weight.device).to(weight.dtype)
        with torch.no_grad():
            weight.mul_(keep)
        weight.register_hook(lambda grad, keep=keep: grad * keep)


def outside_mask_max(peft_model, mask: dict[int, torch.Tensor]) -> float:
    """Largest |lora_A| entry outside the mask (0.0 when the mask held)."""
    worst = 0.0
    for layer, idx in mask.items():
        weight = down_proj(peft_model, layer).lora_A[ADAPTER].weight.detach()
        outside = 1 - column_mask(idx, weight.shape[1], weight.device)
        worst = max(worst, float((weight.abs() * outside).max()))
    return worst


def trainable_parameters(model, mask: dict[int, torch.Tensor] | None = None) -> dict:
    """Parameters that train: all with requires_grad, and those that can actually change (masked
    lora_A columns only) when a mask is given."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    effective = trainable
    if mask:
        for layer, idx in mask.items():
            weight = down_proj(model, layer).lora_A[ADAPTER].weight
            effective -= weight.shape[0] * (weight.shape[1] - len(idx))
    return {"total": total, "trainable": trainable, "effective": effective, "fraction": effective / total}

"""Reach the decoder layers and MLP projections of a causal LM, wrapped by PEFT or not."""

from __future__ import annotations

import hashlib

import torch


def decoder_layers(model) -> torch.nn.ModuleList:
    """The transformer blocks of a Hugging Face causal LM (Qwen2/Llama layout), PEFT-wrapped or not."""
    while hasattr(model, "module") and not hasattr(model, "get_base_model"):  # DDP / FSDP wrappers
        model = model.module
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(inner, "model", None), "layers", None)
    if layers is None:
        raise TypeError(f"{type(inner).__name__} has no .model.layers: not a Qwen2/Llama-style causal LM")
    return layers


def down_proj(model, layer: int) -> torch.nn.Module:
    return decoder_layers(model)[layer].mlp.down_proj


def base_weight(module: torch.nn.Module) -> torch.Tensor:
    """The frozen base weight of a Linear, or of a PEFT LoRA layer wrapping one."""
    inner = getattr(module, "base_layer", module)
    return inner.weight


def weight_digests(model, skip: str = "lora_") -> dict[str, str]:
    """sha256 of every parameter's bytes (adapter parameters skipped): proof that the base is untouched."""
    out = {}
    for name, p in model.named_parameters():
        if skip in name:
            continue
        raw = p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
        out[name.replace("base_model.model.", "").replace(".base_layer", "")] = hashlib.sha256(
            raw
        ).hexdigest()
    return out

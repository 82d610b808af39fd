"""Small in-process models and checks that several test files share (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_qwen2(
    vocab: int,
    hidden: int = 32,
    intermediate: int = 64,
    layers: int = 2,
    max_positions: int = 128,
    tie: bool = False,
    seed: int = 0,
):
    """A random Qwen2ForCausalLM (4 heads, 2 KV heads) in eval mode, seeded."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tie,
    )
    return Qwen2ForCausalLM(config).eval()


def assert_vanilla_reload_matches(adapter_dir: Path) -> None:
    """`PeftModel.from_pretrained(base, adapter_dir)` reproduces the training-time logits saved with it."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from orin_unlearn.edge import adapters

    base = AutoModelForCausalLM.from_pretrained(adapters.resolve_base("tiny"))
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    ref = load_file(str(adapter_dir / "reference_logits.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
    assert torch.allclose(logits, ref["logits"], atol=1e-5, rtol=0)

"""Small in-process models and checks that several test files share (no downloads)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import torch

FAMILIES = ("llama", "qwen2", "qwen3")
# SmolLM2-Instruct's layout: the chat tokens are the first ids of the vocabulary.
LLAMA_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SMOLLM2_SYSTEM + "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


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


@functools.cache
def llama_tokenizer_json(vocab_size: int = 384) -> str:
    """A SmolLM2-style byte-level BPE (GPT-2 pre-tokenizer, specials at ids 0..2), trained on the
    demo world's prompts and replies and the template's strings; as tokenizer.json text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from orin_unlearn.benchmarks.world import build_prompts

    corpus = [SMOLLM2_TEMPLATE, SMOLLM2_SYSTEM, "user\nassistant\nsystem\n"]
    corpus += [m["content"] + "\n" + p.answer for p in build_prompts()[::40] for m in p.messages]
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(LLAMA_SPECIALS),  # ids 0, 1, 2, before the byte alphabet
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok.to_str()


def _write_llama_tokenizer(path: Path, vocab_size: int) -> None:
    """tokenizer.json, tokenizer_config.json (SmolLM2-Instruct's fields), chat_template.jinja and
    generation_config.json (eos [2], pad 0)."""
    (path / "tokenizer.json").write_text(llama_tokenizer_json(vocab_size), encoding="utf-8")
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(i): {"content": t} | flags for i, t in enumerate(LLAMA_SPECIALS)},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": "<|im_start|>",
        "chat_template": SMOLLM2_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "model_max_length": 8192,
        "pad_token": "<|im_end|>",
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": "<|endoftext|>",
    }
    _write_json(path / "tokenizer_config.json", config)
    _write_json(
        path / "special_tokens_map.json",
        {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
    )
    (path / "chat_template.jinja").write_text(SMOLLM2_TEMPLATE, encoding="utf-8")
    _write_json(path / "generation_config.json", {"bos_token_id": 1, "eos_token_id": [2], "pad_token_id": 0})


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")


def tokenizer_dir(path: str | Path, family: str = "llama", vocab_size: int = 384) -> Path:
    """Write the tokenizer files (and generation_config.json) of `family` into `path`.

    "llama": a SmolLM2-style byte-level BPE of `vocab_size` tokens with its special tokens at ids
    0..2 and SmolLM2's chat template; "qwen2" / "qwen3": the shipped tiny base's Qwen2.5 files
    (4096 tokens, special tokens at the top).
    """
    from orin_unlearn.benchmarks.world import tiny_base_dir

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if family == "llama":
        _write_llama_tokenizer(path, vocab_size)
    else:
        for name in (*QWEN_TOKENIZER_FILES, "generation_config.json"):
            shutil.copy2(tiny_base_dir() / name, path / name)
    return path


def tiny_model_dir(
    path: str | Path,
    family: str = "llama",
    tie: bool = False,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int | None = None,
    intermediate: int = 128,
    max_positions: int = 256,
    vocab_size: int = 384,
    init_std: float = 0.08,
    end_of_turn_scale: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write a complete random checkpoint folder of a Llama, Qwen2 or Qwen3 causal LM, seeded:
    config.json, model.safetensors, generation_config.json and the tokenizer of `tokenizer_dir`.

    Attention is GQA (`kv_heads` < `heads`); `head_dim` defaults to hidden / heads (Qwen3
    checkpoints set it apart). `init_std` (above transformers' 0.02) keeps the random layers from
    being drowned by the embedding, so greedy replies vary instead of repeating the last token.
    `end_of_turn_scale` multiplies the LM-head row of <|im_end|> (the embedding row when tied);
    about 2 makes an untied model's greedy replies end at <|im_end|> within a few tokens.
    """
    import transformers
    from tokenizers import Tokenizer

    path = tokenizer_dir(path, family, vocab_size)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    generation = json.loads((path / "generation_config.json").read_text(encoding="utf-8"))
    config_class, model_class = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
    }[family]
    config = config_class(
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim or hidden // heads,
        max_position_embeddings=max_positions,
        rope_theta=100000.0,
        tie_word_embeddings=tie,
        initializer_range=init_std,
        bos_token_id=generation["bos_token_id"],
        eos_token_id=generation["eos_token_id"][-1],
        pad_token_id=generation["pad_token_id"],
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight[tokenizer.token_to_id("<|im_end|>")] *= end_of_turn_scale
    model.save_pretrained(path, safe_serialization=True)
    _write_json(path / "generation_config.json", generation)  # save_pretrained rewrote it from config
    return path


def assert_vanilla_reload_matches(adapter_dir: Path) -> None:
    """`PeftModel.from_pretrained(base, adapter_dir)` reproduces the training-time logits saved with it."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from orin_unlearn.train.models import resolve_base

    base = AutoModelForCausalLM.from_pretrained(resolve_base("tiny"))
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    ref = load_file(str(adapter_dir / "reference_logits.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
    assert torch.allclose(logits, ref["logits"], atol=1e-5, rtol=0)

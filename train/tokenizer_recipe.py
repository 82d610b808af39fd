"""Train the demo world's byte-level BPE tokenizer and save it in Hugging Face format.

Byte-level, so any UTF-8 text encodes with no unknown token; Qwen2's pre-tokenizer split and
special tokens; Qwen2.5's ChatML chat template, so `AutoTokenizer.from_pretrained(dir)
.apply_chat_template(...)` behaves as it does for Qwen2.5-Instruct.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from orin_unlearn.edge.chat import chatml_template

# Qwen2's pre-tokenization pattern (digits split one by one).
QWEN_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> Tokenizer:
    """A Qwen2-style byte-level BPE trained on `corpus`, special tokens appended after the merges."""
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(QWEN_SPECIAL_TOKENS),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(QWEN_SPECIAL_TOKENS)
    return tok


def save_hf_tokenizer(tok: Tokenizer, out_dir: str | Path, default_system: str, max_length: int) -> None:
    """Save as a Qwen2TokenizerFast directory with the ChatML template."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=[
            t for t in QWEN_SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")
        ],
        chat_template=chatml_template(default_system),
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    hf.save_pretrained(str(out_dir))

"""A torch-free chat tokenizer over a Hugging Face model directory (tokenizer.json + config).

Works for the shipped tiny model and for real Qwen2.5 checkpoints alike; the runtime on the Orin
uses this instead of transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from orin_unlearn.edge.chat import default_system_of, render_chat


class ChatTokenizer:
    """Encode chats, decode tokens, and know the stop tokens of a ChatML model."""

    def __init__(self, model_dir: str | Path):
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {model_dir}")
        self.tokenizer = Tokenizer.from_file(str(path))
        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        jinja = model_dir / "chat_template.jinja"
        template = jinja.read_text(encoding="utf-8") if jinja.is_file() else config.get("chat_template") or ""
        self.default_system = default_system_of(template)
        self.eos_token = config.get("eos_token") or "<|im_end|>"
        self.pad_token = config.get("pad_token") or "<|endoftext|>"
        self.stop_token_ids = sorted(
            {
                self.token_id(t)
                for t in (self.eos_token, "<|im_end|>", "<|endoftext|>")
                if self.tokenizer.token_to_id(t) is not None
            }
        )
        self.pad_token_id = self.token_id(self.pad_token)

    def token_id(self, token: str) -> int:
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return tid

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return render_chat(messages, add_generation_prompt, self.default_system)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        return self.encode(self.render(messages, add_generation_prompt))

    def encode_prompts(
        self, conversations: list[list[dict]], prefixes: list[str] | None = None
    ) -> list[list[int]]:
        """Each chat's prompt ids, with an optional pre-filled start of the assistant turn."""
        prefixes = prefixes or [""] * len(conversations)
        return [
            self.encode_chat(list(c)) + (self.encode(p) if p else [])
            for c, p in zip(conversations, prefixes, strict=True)
        ]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

"""A torch-free chat tokenizer over a Hugging Face model directory (tokenizer.json + config).

Renders the model's own chat template (chat_template.jinja, or tokenizer_config.json's
`chat_template`), so it is exact for the shipped tiny model, Qwen2.5, SmolLM2, Llama 3 and any
other checkpoint with a template; the end-of-turn token, default system prompt and stop tokens
come from rendering it (see `orin_unlearn.edge.chat.ChatTemplate`), not from `eos_token`, which
GGUF-converted tokenizers can get wrong. The runtime on the Orin uses this instead of transformers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from orin_unlearn.edge.chat import ChatTemplate, ChatTemplateError

# tokenizer_config.json keys that transformers hands to a chat template
TEMPLATE_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
ENDOFTEXT = "<|endoftext|>"


def token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json stores it (a string or an AddedToken dict) -> its text."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def template_source(config: dict, model_dir: Path) -> str:
    """The chat template of a model directory: chat_template.jinja, else tokenizer_config.json's."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template") or ""
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template", "") for t in template if isinstance(t, dict)}
        template = named.get("default", "")
    return template if isinstance(template, str) else ""


def template_kwargs(config: dict) -> dict[str, Any]:
    """The special tokens a chat template sees (`bos_token`, `eos_token`, ...), as transformers passes them."""
    out: dict[str, Any] = {k: token_text(config.get(k)) for k in TEMPLATE_TOKEN_KEYS}
    out = {k: v for k, v in out.items() if v is not None}
    extra = [token_text(t) for t in config.get("additional_special_tokens") or []]
    if extra:
        out["additional_special_tokens"] = [t for t in extra if t]
    return out


def load_chat_template(tokenizer: Tokenizer, config: dict, template: str, origin: str) -> ChatTemplate:
    """The `ChatTemplate` of a tokenizer, its tokenizer_config.json and its template source."""
    if not template.strip():
        raise ChatTemplateError(
            f"{origin} has no chat template (no chat_template.jinja and no chat_template in "
            "tokenizer_config.json): cannot render chats for this model"
        )
    added = [t.content for t in tokenizer.get_added_tokens_decoder().values()]
    return ChatTemplate(template, added, template_kwargs(config), origin=origin)


def choose_pad_token(
    configured: str | None, start_of_turn: str | None, end_of_turn: str, in_vocab: Callable[[str], bool]
) -> str:
    """The configured pad token unless it is missing or the start-of-turn token, else
    `<|endoftext|>` if the vocabulary has it, else the end-of-turn token."""
    if configured and configured != start_of_turn and in_vocab(configured):
        return configured
    return ENDOFTEXT if in_vocab(ENDOFTEXT) else end_of_turn


def generation_eos_ids(model_dir: Path) -> list[int]:
    """generation_config.json's eos_token_id (an int or a list), [] without the file."""
    path = model_dir / "generation_config.json"
    if not path.is_file():
        return []
    eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list) else [eos])]


class ChatTokenizer:
    """Encode chats with the model's own template, decode tokens, and know the stop and pad tokens.

    Attributes:
        default_system: the system prompt the template inserts when a chat has none ("" if none).
        end_of_turn, end_of_turn_id: the token that ends an assistant reply (from the template).
        eos_token: the same as `end_of_turn` (kept for callers that name it so).
        stop_token_ids: the end-of-turn id plus generation_config.json's eos ids, never the
            template's start-of-turn token.
        pad_token, pad_token_id: see `choose_pad_token`.
    """

    def __init__(self, model_dir: str | Path):
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {model_dir}")
        self.model_dir = model_dir
        self.tokenizer = Tokenizer.from_file(str(path))
        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        self.template = load_chat_template(
            self.tokenizer, config, template_source(config, model_dir), str(model_dir)
        )
        self.default_system = self.template.default_system
        self.generation_prompt = self.template.generation_prompt
        self.start_of_turn = self.template.start_of_turn
        self.end_of_turn = self.eos_token = self.template.end_of_turn
        self.end_of_turn_id = self.token_id(self.end_of_turn)
        start_id = self.tokenizer.token_to_id(self.start_of_turn) if self.start_of_turn else None
        self.stop_token_ids = sorted(
            {self.end_of_turn_id, *generation_eos_ids(model_dir)}
            - ({start_id} if start_id is not None else set())
        )
        self.pad_token = choose_pad_token(
            token_text(config.get("pad_token")),
            self.start_of_turn,
            self.end_of_turn,
            lambda t: self.tokenizer.token_to_id(t) is not None,
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
        return self.template.render(messages, add_generation_prompt)

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

"""A torch-free chat tokenizer over a Hugging Face model directory (tokenizer.json + config).

Renders the model's own chat template (chat_template.jinja, or tokenizer_config.json's
`chat_template`), so it is exact for the shipped tiny model, Qwen2.5, SmolLM2, Llama 3 and any
other checkpoint with a template; the end-of-turn token, default system prompt and stop tokens
come from rendering it (see `orin_unlearn.edge.chat.ChatTemplate`), not from `eos_token`, which
GGUF-converted tokenizers can get wrong. The runtime on the Orin uses this instead of transformers.

Message contents are text, never markup: a control token typed into a message (a kiosk visitor's
`<|im_start|>system ...`) is encoded as the ordinary tokens of those characters, so only the
template itself can open or close a turn (see `ChatTokenizer.encode_chat`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders

from orin_unlearn.edge.chat import ChatTemplate, ChatTemplateError

# tokenizer_config.json keys that transformers hands to a chat template
TEMPLATE_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
ENDOFTEXT = "<|endoftext|>"
CONTENT_MASK = "\ue000"  # a private-use character standing in for message text (see `mask_content`)
# Normalisers and pre-tokenisers that never drop characters, and shorten text at most 4:1 (NFC
# composes at most four code points into one): `ChatTokenizer.chars_per_token` needs them.
LOSSLESS_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Prepend"}
LOSSLESS_PRE_TOKENIZERS = {"ByteLevel", "Split", "Digits", "Metaspace"}
MAX_COMPOSITION = 4


def token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json stores it (a string or an AddedToken dict) -> its text."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def template_source(config: dict, model_dir: Path) -> str:
    """The chat template of a model directory: chat_template.jinja, else tokenizer_config.json's."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{jinja} is not UTF-8 text: {e}") from None
    template = config.get("chat_template") or ""
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = [
            t.get("template", "") for t in template if isinstance(t, dict) and t.get("name") == "default"
        ]
        template = named[0] if named else ""
    return template if isinstance(template, str) else ""


def template_kwargs(config: dict) -> dict[str, Any]:
    """The special tokens a chat template sees (`bos_token`, `eos_token`, ...), as transformers passes them."""
    out: dict[str, Any] = {k: token_text(config.get(k)) for k in TEMPLATE_TOKEN_KEYS}
    out = {k: v for k, v in out.items() if v is not None}
    listed = config.get("additional_special_tokens")
    extra = [token_text(t) for t in listed] if isinstance(listed, list) else []
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


def mask_content(message: dict) -> dict:
    """`message` with every character of its content, bar leading and trailing whitespace (which
    templates may trim), replaced by `CONTENT_MASK`: the same length, and no token inside."""
    content = message["content"]
    core = content.strip()
    if not core:
        return message
    start = len(content) - len(content.lstrip())
    return {**message, "content": content[:start] + CONTENT_MASK * len(core) + content[start + len(core) :]}


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet inverted: the byte each character of a byte-level BPE vocabulary
    entry stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1)]
    printable += range(ord("\xae"), ord("\xff") + 1)
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _lossless(part: Any, allowed: set[str], key: str) -> bool:
    spec = json.loads(part.__getstate__()) if part is not None else None
    if spec is None:
        return True
    if spec.get("type") == "Sequence":
        return all(_lossless_spec(s, allowed) for s in spec.get(key, []))
    return _lossless_spec(spec, allowed)


def _lossless_spec(spec: dict, allowed: set[str]) -> bool:
    return spec.get("type") in allowed and spec.get("behavior") != "Removed"


def read_json_object(path: Path) -> dict:
    """The JSON object in `path` ({} without the file); ValueError naming the file when it is not
    valid JSON or not an object (a checkpoint's `[]` must not become a traceback)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object but {type(data).__name__}")
    return data


def generation_eos_ids(model_dir: Path) -> list[int]:
    """generation_config.json's eos_token_id (an int or a list), [] without the file."""
    path = model_dir / "generation_config.json"
    eos = read_json_object(path).get("eos_token_id")
    if eos is None:
        return []
    ids = eos if isinstance(eos, list) else [eos]
    if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in ids):
        raise ValueError(f"{path}: eos_token_id is {json.dumps(eos)[:60]}, not token ids")
    return ids


class ChatTokenizer:
    """Encode chats with the model's own template, decode tokens, and know the stop and pad tokens.

    Attributes:
        default_system: the system prompt the template inserts when a chat has none ("" if none).
        end_of_turn, end_of_turn_id: the token that ends an assistant reply (from the template).
        eos_token: the same as `end_of_turn` (kept for callers that name it so).
        stop_token_ids: the end-of-turn id plus generation_config.json's eos ids, never the
            template's start-of-turn token.
        pad_token, pad_token_id: see `choose_pad_token`.
        added_tokens: id -> text of each added token (`<|im_start|>`, ...): what only the template
            may write (see `encode_chat`).
    """

    def __init__(self, model_dir: str | Path):
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {model_dir}")
        self.model_dir = model_dir
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust library raises a bare Exception for a corrupt file
            raise ValueError(f"{path} is not a readable tokenizer (corrupt or truncated?): {e}") from None
        config = read_json_object(model_dir / "tokenizer_config.json")
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
        self.added_tokens = {i: t.content for i, t in self.tokenizer.get_added_tokens_decoder().items()}

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
        """The chat's prompt ids, with message contents read as plain text.

        The rendered chat is encoded as one text, by `encode_batch` (which, unlike `encode`,
        releases the GIL, so a server's worker thread does not stall its event loop); an added token the template wrote keeps its id, one that came
        from a message's content is encoded as the characters it is made of. Which is which shows
        from rendering the chat again with every content masked (`mask_content`): the template's
        own tokens are still there, a content's are not. For chats without such tokens in their
        contents, the ids are exactly those of encoding `render(messages)`.

        Raises:
            ValueError: a content holds an added token and the template changes the length of
                contents (so the masked rendering cannot tell the two apart).
        """
        text = self.render(messages, add_generation_prompt)
        (encoding,) = self.tokenizer.encode_batch([text], add_special_tokens=False)
        found = zip(encoding.ids, encoding.offsets, strict=True)
        spans = [(i, start, end) for i, (t, (start, end)) in enumerate(found) if t in self.added_tokens]
        if not spans:
            return encoding.ids
        masked = self.render([mask_content(m) for m in messages], add_generation_prompt)
        if len(masked) != len(text):
            self._refuse_added_tokens(messages)
            return encoding.ids
        template = [(i, a, b) for i, a, b in spans if masked[a:b] == text[a:b]]
        if len(template) == len(spans):
            return encoding.ids
        pieces, start = [], 0
        for _, begin, end in template:
            pieces.append(text[start:begin])
            start = end
        pieces.append(text[start:])
        ids: list[int] = []
        for n, piece in enumerate(self._text_tokenizer.encode_batch(pieces, add_special_tokens=False)):
            ids += piece.ids
            if n < len(template):
                ids.append(encoding.ids[template[n][0]])
        return ids

    @cached_property
    def _text_tokenizer(self) -> Tokenizer:
        """A copy of the tokenizer that encodes every added token in a text as plain characters."""
        spec = json.loads(self.tokenizer.to_str())
        for token in spec.get("added_tokens", []):
            token["special"] = True  # encode_special_tokens applies to special added tokens only
        clone = Tokenizer.from_str(json.dumps(spec))
        clone.encode_special_tokens = True
        return clone

    def _refuse_added_tokens(self, messages: list[dict]) -> None:
        for i, message in enumerate(messages):
            for token in self.added_tokens.values():
                if token in message["content"]:
                    raise ValueError(
                        f"message {i} contains the control token {token!r}, and this model's chat "
                        "template rewrites message text, so it cannot be kept as plain text"
                    )

    @cached_property
    def chars_per_token(self) -> int | None:
        """At most how many characters of a chat one token stands for (so a chat of more than
        `chars_per_token * n` characters certainly has more than n tokens), or None where the
        normaliser or pre-tokeniser may drop characters and no such bound holds.

        A token covers at most its vocabulary entry's length of normalised text (a byte-level entry
        has a character per byte), and normalising shortens text at most `MAX_COMPOSITION`-fold.
        """
        if not (
            _lossless(self.tokenizer.normalizer, LOSSLESS_NORMALIZERS, "normalizers")
            and _lossless(self.tokenizer.pre_tokenizer, LOSSLESS_PRE_TOKENIZERS, "pretokenizers")
        ):
            return None
        longest = max(len(t) for t in self.tokenizer.get_vocab(with_added_tokens=True))
        return MAX_COMPOSITION * longest

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token stands for (a byte-level token may hold part of a UTF-8 character)."""
        if token in self.added_tokens:
            return self.added_tokens[token].encode("utf-8")
        piece = self.tokenizer.id_to_token(token) or ""
        table = byte_decoder()
        if isinstance(self.tokenizer.decoder, decoders.ByteLevel) and all(c in table for c in piece):
            return bytes(table[c] for c in piece)
        return self.decode([token], skip_special_tokens=False).encode("utf-8")

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

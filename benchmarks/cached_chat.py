"""A `Chat` whose replies are cached by the model's identity: greedy replies are a pure function
of the weights, the prompts and the generation settings, so a base's replies to the same prompts
are generated once, whatever stage or run asks again (minutes each time on a CPU for a real model).

    chat = CachedChat(BackendChat(TorchBackend(model), tokenizer), models.base_digest(base_dir))
    chat.answer_batch(conversations, max_new_tokens=40)      # generated once, then read back
"""

from __future__ import annotations

from collections.abc import Callable

from orin_unlearn.edge.answers import Chat
from orin_unlearn.edge.cache import cached_json

# bump when greedy decoding changes in a way that changes replies
REPLIES_VERSION = 1


class CachedChat:
    """`Chat` over another chat, its replies cached under `identity` (the sha256 of the model's
    weights and tokenizer, and anything else that changes what it says, such as a dtype)."""

    def __init__(self, chat: Chat, identity: dict):
        self.chat = chat
        self.identity = identity

    def answer_batch(
        self,
        conversations: list[list[dict]],
        *,
        prefixes: list[str] | None = None,
        max_new_tokens: int = 40,
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        key = {
            "model": self.identity,
            "conversations": conversations,
            "prefixes": prefixes,
            "max_new_tokens": max_new_tokens,
            "version": REPLIES_VERSION,
        }

        def compute() -> list[str]:
            return self.chat.answer_batch(
                conversations,
                prefixes=prefixes,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                on_batch=on_batch,
            )

        return list(cached_json("replies", key, compute))

    def __getattr__(self, name: str):  # the wrapped chat's backend and tokenizer
        if name == "chat":
            raise AttributeError(name)
        return getattr(self.chat, name)

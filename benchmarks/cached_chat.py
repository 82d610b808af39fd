"""A `Chat` whose replies are cached by the model's identity, question by question: a greedy reply
is a pure function of the weights, the question and the generation settings, so a model answers
each question once, whatever stage, run or set of questions asks it again (minutes each time on a
CPU for a real model). The export gate's held-out prompts and the quality table's forget set, the
base's evaluation in training and the relearning protocol's before-measurement share replies.

    chat = CachedChat(BackendChat(TorchBackend(model), tokenizer), models.identity(base_dir))
    chat.answer_batch(conversations, max_new_tokens=40)      # only unseen questions are generated
    remember_replies(identity, conversations, replies)       # replies generated elsewhere
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from orin_unlearn.edge.answers import Chat
from orin_unlearn.edge.cache import cached_map, key_digest, update_map

log = logging.getLogger(__name__)

# bump when greedy decoding changes in a way that changes replies
REPLIES_VERSION = 2


def _key(identity: dict, max_new_tokens: int) -> dict:
    return {"model": identity, "max_new_tokens": max_new_tokens, "version": REPLIES_VERSION}


def _digests(conversations: list[list[dict]], prefixes: list[str] | None) -> list[str]:
    asked = prefixes if prefixes is not None else [None] * len(conversations)
    # an empty prefill is no prefill: a prompt attack's plain case reads the evaluation's reply
    return [key_digest([c, p or None]) for c, p in zip(conversations, asked, strict=True)]


def remember_replies(
    identity: dict,
    conversations: list[list[dict]],
    replies: list[str],
    max_new_tokens: int = 40,
    prefixes: list[str] | None = None,
) -> None:
    """Store a model's greedy replies generated elsewhere (training's evaluation of an adapter
    that had no identity until it was saved), so later stages read them back."""
    update_map(
        "replies",
        _key(identity, max_new_tokens),
        dict(zip(_digests(conversations, prefixes), replies, strict=True)),
    )


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
        key = _key(self.identity, max_new_tokens)
        digests = _digests(conversations, prefixes)
        known = cached_map("replies", key)
        new = {d: i for i, d in enumerate(digests) if d not in known}  # each unseen question once
        if on_batch is not None and len(digests) > len(new):
            on_batch(len(digests) - len(new))
        if new:
            rows = list(new.values())
            got = self.chat.answer_batch(
                [conversations[i] for i in rows],
                prefixes=None if prefixes is None else [prefixes[i] for i in rows],
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                on_batch=on_batch,
            )
            fresh = dict(zip(new, got, strict=True))
            update_map("replies", key, fresh)
            known = known | fresh
        log.info("replies: %d of %d questions read from the cache", len(digests) - len(new), len(digests))
        return [known[d] for d in digests]

    def __getattr__(self, name: str):  # the wrapped chat's backend and tokenizer
        if name == "chat":
            raise AttributeError(name)
        return getattr(self.chat, name)

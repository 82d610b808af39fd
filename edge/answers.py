"""One chat interface for measuring: greedy replies to many conversations over any `Backend`.

Every measurement (the export gate, the quality table, the robustness attacks, training-time
evaluation) answers through `BackendChat`, over the same backend objects the server's `Generator`
runs, so what is measured is what is served. A backend with `greedy_batch` (onnxruntime, torch)
answers a length-sorted batch at once; any other (TensorRT) answers one sequence at a time
through the server's own `Generator` at temperature 0.

    chat = BackendChat.from_dir("runs/demo/export/onnx-fp16")
    chat.answer_batch([[{"role": "user", "content": "Who directed Inception?"}]], max_new_tokens=40)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from orin_unlearn.edge.backends import Backend, open_backend
from orin_unlearn.edge.batching import by_length
from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.sampling import SamplingParams
from orin_unlearn.edge.tokenizer import ChatTokenizer


class Chat(Protocol):
    """Greedy replies to chats, in order; what every benchmark and gate measures."""

    def answer_batch(
        self,
        conversations: list[list[dict]],
        *,
        prefixes: list[str] | None = None,
        max_new_tokens: int = 40,
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]: ...


class BackendChat:
    """`Chat` over a `Backend`: chat-templated prompts (with optional pre-filled assistant starts),
    batches of similar length, greedy tokens, decoded replies."""

    def __init__(self, backend: Backend, tokenizer: ChatTokenizer):
        self.backend = backend
        self.tokenizer = tokenizer

    @classmethod
    def from_dir(cls, model_dir: str | Path, backend: str = "auto", **options: Any) -> BackendChat:
        """A verified stage or checkpoint, opened as the server opens it (`open_backend`)."""
        return cls(open_backend(model_dir, backend, **options), ChatTokenizer(model_dir))

    def answer_batch(
        self,
        conversations: list[list[dict]],
        *,
        prefixes: list[str] | None = None,
        max_new_tokens: int = 40,
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Greedy reply to each conversation (order kept); prompts of similar length share a batch.
        A prefix pre-fills the assistant turn (the reply then starts with it). `on_batch(n)` is
        called after each batch of n replies (progress)."""
        tok = self.tokenizer
        encoded = tok.encode_prompts(conversations, prefixes)
        starts = prefixes or [""] * len(conversations)

        def answer(idx: list[int]) -> list[str]:
            tokens = self.greedy_tokens([encoded[i] for i in idx], max_new_tokens)
            if on_batch is not None:
                on_batch(len(idx))
            return [(starts[i] + tok.decode(t)).strip() for i, t in zip(idx, tokens, strict=True)]

        return by_length([len(e) for e in encoded], batch_size, answer)

    def greedy_tokens(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations of token-id prompts, each cut before its first stop token: the
        backend's own batched `greedy_batch` where it has one, else the serving `Generator` at
        temperature 0, one prompt at a time (ContextOverflowError for a prompt that does not fit)."""
        tok = self.tokenizer
        batched = getattr(self.backend, "greedy_batch", None)
        if batched is not None:
            return batched(
                prompts, max_new_tokens=max_new_tokens, stop_ids=tok.stop_token_ids, pad_id=tok.pad_token_id
            )
        generator = Generator(self.backend, tok)
        params = SamplingParams(max_new_tokens=max_new_tokens)
        return [generator.generate_ids(ids, params).tokens for ids in prompts]

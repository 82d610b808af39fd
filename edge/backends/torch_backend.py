"""Reference torch backend: batched greedy answers from a Hugging Face causal LM.

Used for evaluation during training and for parity tests against the exported graphs. torch and
transformers are imported inside, so the runtime package stays torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from orin_unlearn.edge.batching import by_length, left_pad
from orin_unlearn.edge.formats import verify_checkpoint
from orin_unlearn.edge.tokenizer import ChatTokenizer


class TorchChat:
    """Greedy chat answers from a transformers model (loaded from a directory or given)."""

    def __init__(self, model: Any, tokenizer: ChatTokenizer, device: str = "cpu"):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str = "cpu", dtype: str = "float32") -> TorchChat:
        import torch
        from transformers import AutoModelForCausalLM

        verify_checkpoint(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
        return cls(model, ChatTokenizer(model_dir), device)

    def answer_batch(
        self,
        conversations: list[list[dict]],
        max_new_tokens: int = 40,
        batch_size: int = 64,
        prefixes: list[str] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Greedy reply to each conversation (order kept). Batches are left-padded. A prefix
        pre-fills the assistant turn (the reply then starts with it). `on_batch(n)` is called after
        each batch of n replies (progress)."""
        import torch

        tok = self.tokenizer
        encoded = tok.encode_prompts(conversations, prefixes)
        prefixes = prefixes or [""] * len(conversations)

        def answer(idx: list[int]) -> list[str]:
            ids, mask = left_pad([encoded[i] for i in idx], tok.pad_token_id)
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=torch.from_numpy(ids).to(self.device),
                    attention_mask=torch.from_numpy(mask).to(self.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=tok.stop_token_ids,
                    pad_token_id=tok.pad_token_id,
                )
            width = ids.shape[1]
            if on_batch is not None:
                on_batch(len(idx))
            return [
                (prefixes[i] + tok.decode(out[row, width:].tolist())).strip() for row, i in enumerate(idx)
            ]

        return by_length([len(e) for e in encoded], batch_size, answer)


class TorchBackend:
    """One sequence at a time through a transformers model with its own KV cache (the reference
    the other backends are checked against)."""

    name = "torch"

    def __init__(self, model: Any, max_context: int):
        self.model = model
        self.max_context = max_context
        self._cache = None
        self._length = 0

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str = "cpu", dtype: str = "float32") -> TorchBackend:
        import torch
        from transformers import AutoModelForCausalLM

        verify_checkpoint(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
        return cls(model, model.config.max_position_embeddings)

    def _run(self, ids: list[int]):
        import torch

        device = next(self.model.parameters()).device
        total = self._length + len(ids)
        with torch.no_grad():
            out = self.model(
                input_ids=torch.tensor([ids], device=device),
                position_ids=torch.arange(self._length, total, device=device)[None],
                past_key_values=self._cache,
                use_cache=True,
            )
        self._cache, self._length = out.past_key_values, total
        return out.logits[0, -1].float().cpu().numpy()

    def prefill(self, ids: list[int]):
        from transformers import DynamicCache

        if not ids:
            raise ValueError("prefill needs at least one token")
        self._cache, self._length = DynamicCache(), 0
        return self._run(list(ids))

    def decode(self, token: int):
        if self._cache is None:
            raise RuntimeError("decode before prefill")
        return self._run([int(token)])

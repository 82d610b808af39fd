"""Reference torch backend: a Hugging Face causal LM (from a folder, or a model in memory) for the
`Generator`, and batched greedy answers through transformers' `generate` for `BackendChat`.

Used for evaluation during training and for parity tests against the exported graphs. torch and
transformers are imported inside, so the runtime package stays torch-free.

    chat = BackendChat(TorchBackend(model), ChatTokenizer(base_dir))   # an in-memory model
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orin_unlearn.edge.batching import left_pad
from orin_unlearn.edge.device.installed import verify_served
from orin_unlearn.edge.formats import verify_checkpoint


class TorchBackend:
    """One sequence at a time through a transformers model with its own KV cache (the reference
    the other backends are checked against)."""

    name = "torch"

    def __init__(self, model: Any, max_context: int | None = None):
        """`model`: a transformers causal LM (or a PEFT model over one), used as it is (not moved,
        not switched to eval); `max_context`: default its config's `max_position_embeddings`."""
        self.model = model
        self.max_context = model.config.max_position_embeddings if max_context is None else max_context
        self._cache = None
        self._length = 0

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str = "cpu", dtype: str = "float32") -> TorchBackend:
        import torch
        from transformers import AutoModelForCausalLM

        verify_checkpoint(model_dir)
        verify_served(model_dir)  # inside an unpacked bundle: what its signature covers
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
        return cls(model, model.config.max_position_embeddings)

    def greedy_batch(
        self, prompts: list[list[int]], *, max_new_tokens: int, stop_ids: list[int], pad_id: int
    ) -> list[list[int]]:
        """Greedy continuations of token-id prompts (one left-padded batch through `generate`),
        each cut before its first stop token."""
        import torch

        device = next(self.model.parameters()).device
        ids, mask = left_pad(prompts, pad_id)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=torch.from_numpy(ids).to(device),
                attention_mask=torch.from_numpy(mask).to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_ids,
                pad_token_id=pad_id,
            )
        stops = set(stop_ids)
        replies = []
        for row in out[:, ids.shape[1] :].tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            replies.append(row[:cut])
        return replies

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

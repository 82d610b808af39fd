"""What the analyses share about one run directory: its adapter's manifest, the concept's prompt
splits (read from its world stage), the neuron mask and scores, and (loaded on first use, then
cached) the model before and after unlearning with their greedy answers and residual-stream
activations.

"before" is the run's base with the adapters it was trained on top of (none for a first concept);
"after" is that plus the run's own adapter, applied with PEFT and merged in fp32. torch,
transformers and peft are imported only inside the methods that run a model.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from orin_unlearn.benchmarks.world import Prompt, load_world
from orin_unlearn.benchmarks.world.catalogue import Catalogue
from orin_unlearn.benchmarks.world.splits import Splits
from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import read_manifest

MODELS = ("before", "after")


def _key(prompt: Prompt) -> str:
    return json.dumps(prompt.messages, sort_keys=True)


def _missing(prompts: list[Prompt], cache: dict) -> list[Prompt]:
    """The prompts not yet in `cache`, each once, in order."""
    todo: dict[str, Prompt] = {}
    for p in prompts:
        if _key(p) not in cache:
            todo.setdefault(_key(p), p)
    return list(todo.values())


def load_tensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file as numpy arrays (no torch)."""
    from safetensors.numpy import load_file

    return load_file(str(path))


@dataclass
class RunContext:
    """One run directory as the analyses see it."""

    run: Path
    device: str = "cpu"
    batch_size: int = 64
    seed: int = 0
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    _answers: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    _residuals: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def out(self) -> Path:
        path = self.run / "analysis"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def adapter_dir(self) -> Path:
        return self.run / "adapter"

    @cached_property
    def manifest(self) -> dict:
        """The adapter's manifest (raises ManifestError when the run has no finished adapter)."""
        return read_manifest(self.adapter_dir)

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def catalogue(self) -> Catalogue:
        """The catalogue the run's world was built from."""
        return self.splits.catalogue

    @cached_property
    def splits(self) -> Splits:
        """The prompts of the run's world stage (refused when it is another concept's)."""
        concept = self.config.get("concept") or self.manifest["results"]["concept"]
        return load_world(self.run, concept)

    def sample(self, name: str, n: int, split: str | None = "heldout") -> list[Prompt]:
        """At most `n` prompts of one set (forget / neighbour / retain), seeded."""
        items = self.splits.get(name, split)
        return items if len(items) <= n else random.Random(f"{self.seed}:{name}").sample(items, n)

    def mask_layers(self) -> list[int]:
        """The layers the adapter was trained on (its mask), in order."""
        for path in (self.adapter_dir / "mask.safetensors", self.run / "probe" / "mask.safetensors"):
            if path.is_file():
                return sorted(int(k.split(".")[1]) for k in load_tensors(path))
        raise ManifestError(f"{self.run} has neither adapter/mask.safetensors nor probe/mask.safetensors")

    def scores(self) -> dict[str, np.ndarray]:
        """The run's neuron scores ([layers, d_ff] per signal): probe/ first, else adapter/."""
        for path in (self.run / "probe" / "scores.safetensors", self.adapter_dir / "scores.safetensors"):
            if path.is_file():
                return load_tensors(path)
        raise ManifestError(f"{self.run} has no probe/scores.safetensors (run `orin-unlearn unlearn score`)")

    # -- models (torch inside) -------------------------------------------------------------------

    def model(self, which: str):
        if which not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {which!r}")
        if which not in self._models:
            from orin_unlearn.train import models

            chain = [Path(p) for p in self.config.get("previous_adapters", [])]
            if which == "after":
                chain.append(self.adapter_dir)
            self._models[which] = models.load_unlearned(
                self.config.get("base", "tiny"), chain, "merge", "float32", self.device
            ).eval()
        return self._models[which]

    @cached_property
    def tokenizer(self):
        from orin_unlearn.edge.tokenizer import ChatTokenizer
        from orin_unlearn.train.models import resolve_base

        return ChatTokenizer(resolve_base(self.config.get("base", "tiny")))

    def answers(self, which: str, prompts: list[Prompt], max_new_tokens: int = 40) -> list[str]:
        """Greedy replies of one model, cached per prompt."""
        from orin_unlearn.edge.answers import BackendChat
        from orin_unlearn.edge.backends.torch_backend import TorchBackend

        cache = self._answers.setdefault(which, {})
        todo = _missing(prompts, cache)
        if todo:
            chat = BackendChat(TorchBackend(self.model(which)), self.tokenizer)
            replies = chat.answer_batch(
                [list(p.messages) for p in todo], max_new_tokens=max_new_tokens, batch_size=self.batch_size
            )
            cache.update({_key(p): r for p, r in zip(todo, replies, strict=True)})
        return [cache[_key(p)] for p in prompts]

    def residuals(self, which: str, prompts: list[Prompt]) -> np.ndarray:
        """Residual stream (each layer's output) at the last prompt token: [layers, n, d_model]."""
        cache = self._residuals.setdefault(which, {})
        todo = _missing(prompts, cache)
        if todo:
            rows = last_token_residuals(
                self.model(which), self.tokenizer, [list(p.messages) for p in todo], self.batch_size
            )
            cache.update({_key(p): rows[:, i] for i, p in enumerate(todo)})
        return np.stack([cache[_key(p)] for p in prompts], axis=1)


def decoder_layers(model):
    """The transformer blocks of a Hugging Face causal LM (Qwen2/Llama layout), PEFT-wrapped or not."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(inner, "model", None), "layers", None)
    if layers is None:
        raise TypeError(f"{type(inner).__name__} has no .model.layers: not a Qwen2/Llama-style causal LM")
    return layers


def last_token_residuals(model, tokenizer, conversations: list[list[dict]], batch_size: int) -> np.ndarray:
    """[layers, n, d_model] float32: each decoder layer's output (the residual stream; the last
    layer's before the final norm, unlike `hidden_states[-1]`) at each chat prompt's last token
    (the end of the chat template's generation prompt)."""
    import torch

    device = next(model.parameters()).device
    encoded = [tokenizer.encode_chat(c, add_generation_prompt=True) for c in conversations]
    seen: dict[int, torch.Tensor] = {}

    def hook(index: int):
        def keep(_module, _args, output) -> None:
            seen[index] = (output[0] if isinstance(output, tuple) else output).detach()

        return keep

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(decoder_layers(model))]
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, x in enumerate(chunk):
                ids[row, : len(x)] = torch.tensor(x)
                mask[row, : len(x)] = 1
            with torch.no_grad():
                # the hooks read the residual stream; the LM head runs on one position, not all
                model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    use_cache=False,
                    logits_to_keep=1,
                )
            last = torch.tensor([len(x) - 1 for x in chunk], device=device)
            rows = torch.arange(len(chunk), device=device)
            out.append(torch.stack([seen[i][rows, last] for i in sorted(seen)]).float().cpu().numpy())
    finally:
        for h in handles:
            h.remove()
    return np.concatenate(out, axis=1)

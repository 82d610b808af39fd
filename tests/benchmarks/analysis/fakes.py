"""A stand-in for RunContext: the demo world's splits with hand-made answers and activations."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from orin_unlearn.benchmarks.world import Prompt, build_prompts, load_catalogue, split_prompts

_SPLITS = None


def inception_splits():
    global _SPLITS
    if _SPLITS is None:
        catalogue = load_catalogue()
        _SPLITS = split_prompts(build_prompts(catalogue), catalogue, "Inception")
    return _SPLITS


class FakeContext:
    """What the analyses read from a run, with answers / residuals given by functions."""

    def __init__(
        self,
        out: Path,
        answer: Callable[[str, Prompt], str] | None = None,
        residual: Callable[[str, Prompt], np.ndarray] | None = None,
        scores: dict | None = None,
        layers: list[int] | None = None,
    ):
        self.run, self._out, self.seed = out, out / "analysis", 0
        self.splits = inception_splits()
        self._answer, self._residual = answer, residual
        self._scores, self._layers = scores, layers or [0]

    @property
    def out(self) -> Path:
        self._out.mkdir(parents=True, exist_ok=True)
        return self._out

    def sample(self, name: str, n: int, split: str | None = "heldout") -> list[Prompt]:
        items = self.splits.get(name, split)
        return items if len(items) <= n else random.Random(f"{self.seed}:{name}").sample(items, n)

    def answers(self, which: str, prompts: list[Prompt]) -> list[str]:
        return [self._answer(which, p) for p in prompts]

    def residuals(self, which: str, prompts: list[Prompt]) -> np.ndarray:
        return np.stack([self._residual(which, p) for p in prompts], axis=1)

    def scores(self) -> dict:
        return self._scores

    def mask_layers(self) -> list[int]:
        return self._layers


def stable_hash(prompt: Prompt) -> int:
    return sum(json.dumps(prompt.messages).encode())

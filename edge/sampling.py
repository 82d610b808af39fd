"""Token choice from one step's logits: greedy, temperature, top-k, top-p, repetition penalty.

Pure numpy, shared by every backend, so the same logits give the same token on the Orin and in
tests. `SamplingParams` validates its values and names the bad one (the server turns that into a
400 response).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. temperature 0 means greedy; seed makes sampling repeatable."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False  # keep going past end-of-turn tokens (benchmarks: fixed lengths)

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "temperature": 0.0 <= self.temperature <= 5.0,
            "top_p": 0.0 < self.top_p <= 1.0,
            "top_k": self.top_k >= 0,
            "repetition_penalty": 0.0 < self.repetition_penalty <= 10.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed={self.seed!r} is out of range")
        if len(self.stop) > 4 or any(not s for s in self.stop):
            raise ValueError(f"stop={list(self.stop)!r}: at most 4 non-empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def apply_repetition_penalty(logits: np.ndarray, previous: Sequence[int], penalty: float) -> np.ndarray:
    """CTRL-style penalty (as in transformers): seen tokens' positive logits are divided by
    `penalty`, negative ones multiplied."""
    if penalty == 1.0 or not len(previous):
        return logits
    out = logits.copy()
    seen = np.unique(np.asarray(previous, dtype=np.int64))
    values = out[seen]
    out[seen] = np.where(values > 0, values / penalty, values * penalty)
    return out


def choose(
    logits: np.ndarray, params: SamplingParams, rng: np.random.Generator, previous: Sequence[int] = ()
) -> int:
    """The next token from a [vocab] logits row."""
    logits = apply_repetition_penalty(
        np.asarray(logits, dtype=np.float32), previous, params.repetition_penalty
    )
    if params.greedy:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    if 0 < params.top_k < scaled.size:
        kth = np.partition(scaled, -params.top_k)[-params.top_k]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, params.top_p) + 1)]
        mask = np.zeros_like(probs, dtype=bool)
        mask[keep] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))

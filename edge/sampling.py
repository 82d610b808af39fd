"""Token choice from one step's logits: greedy, temperature, top-k, top-p, repetition penalty,
logit bias, and the log-probabilities a client may ask for.

Pure numpy, shared by every backend, so the same logits give the same token on the Orin and in
tests. `SamplingParams` validates its values and names the bad one (`SamplingError.param`, which
the server turns into a 400 response). The ranges are chosen so that no accepted value can make
the distribution NaN: a temperature is 0 (greedy) or at least `MIN_TEMPERATURE`, a repetition
penalty lies in `PENALTY_RANGE`, and `choose` works in float64 after subtracting the maximum and
falls back to greedy if the distribution still is not finite (NaN logits from a backend).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Below 0.01 sampling is greedy in all but name, and float32 logits (at most 3.4e38) divided by
# 0.01 stay finite in float64, so exp(x - max) cannot become inf - inf.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 5.0
PENALTY_RANGE = (0.1, 10.0)
MAX_BIAS = 100.0  # OpenAI's logit_bias range is [-100, 100]
MAX_TOP_LOGPROBS = 20  # as OpenAI
FLOOR_LOGPROB = -9999.0  # what a -inf log-probability is reported as (JSON has no -inf)


class SamplingError(ValueError):
    """A sampling parameter out of range; `param` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. temperature 0 means greedy; seed makes sampling repeatable.

    `logit_bias` holds (token id, bias) pairs added to the logits before any choice; with
    `logprobs` each chosen token's log-probability (and the `top_logprobs` likeliest tokens')
    under the model's own distribution is recorded, before penalty, bias and temperature.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False  # keep going past end-of-turn tokens (benchmarks: fixed lengths)
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        low, high = PENALTY_RANGE
        checks = {
            "max_new_tokens": (self.max_new_tokens >= 1, ">= 1"),
            "temperature": (
                self.temperature == 0.0 or MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE,
                f"0 (greedy) or {MIN_TEMPERATURE:g}..{MAX_TEMPERATURE:g}",
            ),
            "top_p": (0.0 < self.top_p <= 1.0, "in (0, 1]"),
            "top_k": (self.top_k >= 0, ">= 0"),
            "repetition_penalty": (low <= self.repetition_penalty <= high, f"{low:g}..{high:g}"),
            "top_logprobs": (0 <= self.top_logprobs <= MAX_TOP_LOGPROBS, f"0..{MAX_TOP_LOGPROBS}"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise SamplingError(name, f"{name}={getattr(self, name)!r} is out of range: {allowed}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise SamplingError("seed", f"seed={self.seed!r} is out of range")
        if len(self.stop) > 4 or any(not s for s in self.stop):
            raise SamplingError("stop", f"stop={list(self.stop)!r}: at most 4 non-empty strings")
        for token, bias in self.logit_bias:
            if token < 0 or not -MAX_BIAS <= bias <= MAX_BIAS:
                raise SamplingError(
                    "logit_bias",
                    f"logit_bias={{{token}: {bias!r}}}: token ids are >= 0 and biases in "
                    f"[-{MAX_BIAS:g}, {MAX_BIAS:g}]",
                )

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


def apply_logit_bias(logits: np.ndarray, bias: Sequence[tuple[int, float]]) -> np.ndarray:
    """`logits` with each (token id, bias) added; ids beyond the row are ignored."""
    if not bias:
        return logits
    out = logits.copy()
    for token, value in bias:
        if token < out.size:
            out[token] += value
    return out


def choose(
    logits: np.ndarray, params: SamplingParams, rng: np.random.Generator, previous: Sequence[int] = ()
) -> int:
    """The next token from a [vocab] logits row."""
    logits = np.asarray(logits, dtype=np.float64)
    logits = np.where(np.isnan(logits), -np.inf, logits)
    logits = apply_repetition_penalty(logits, previous, params.repetition_penalty)
    logits = apply_logit_bias(logits, params.logit_bias)
    best = int(np.argmax(logits))
    if params.greedy or not np.isfinite(logits[best]):
        return best  # an inf logit wins outright; an all -inf row has nothing to sample
    scaled = (logits - logits[best]) / params.temperature
    if 0 < params.top_k < scaled.size:
        kth = np.partition(scaled, -params.top_k)[-params.top_k]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, params.top_p) + 1)]
        mask = np.zeros_like(probs, dtype=bool)
        mask[keep] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    if not np.all(np.isfinite(probs)):
        return best
    return int(rng.choice(probs.size, p=probs))


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability and the likeliest alternatives, as (id, logprob)."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


def token_logprobs(logits: np.ndarray, token: int, top: int = 0) -> TokenLogprob:
    """`token`'s log-probability under softmax(logits), and the `top` likeliest (id, logprob) pairs,
    best first; -inf is reported as `FLOOR_LOGPROB`."""
    row = np.asarray(logits, dtype=np.float64)
    row = np.where(np.isnan(row), -np.inf, row)
    peak = row.max()
    if not np.isfinite(peak):  # an inf logit, or no finite one: all mass on the arg max
        logp = np.full(row.shape, -np.inf)
        logp[int(np.argmax(row))] = 0.0
    else:
        shifted = row - peak
        logp = shifted - np.log(np.exp(shifted).sum())

    def value(x: float) -> float:
        return float(x) if np.isfinite(x) else FLOOR_LOGPROB

    ranked: list[tuple[int, float]] = []
    if top > 0:
        k = min(top, row.size)
        best = np.argpartition(-logp, k - 1)[:k]
        best = best[np.argsort(-logp[best], kind="stable")]
        ranked = [(int(i), value(logp[i])) for i in best]
    return TokenLogprob(token, value(logp[token]), ranked)

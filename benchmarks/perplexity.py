"""Perplexity and KL to the base on a held-out general corpus, for any backend.

The corpus is the demo world's held-out retain chats with their reference answers: text about
films other than the concept, in sentence forms no training step saw. Each answer is scored
teacher-forced: the model reads the chat prompt, then the reference answer one token at a time,
and we keep its next-token log-probabilities at every answer position (the end-of-turn token
included). That needs only prefill + decode with last-position logits, so the exported graphs
(whose logits cover the last position only) and a TensorRT engine are scored exactly like torch.

- perplexity = exp(mean negative log-likelihood of the reference tokens);
- KL to the base = mean over answer positions of KL(p_base || p_model), in nats: how far the
  model's whole next-token distribution moved away from the base's where it should not move.

numpy only; the torch scorer imports torch inside.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orin_unlearn.edge.backends.ort_backend import OrtDecoder
from orin_unlearn.edge.batching import by_length, left_pad, positions_of

# (prompt ids, continuation ids) of each example -> one [len(continuation), vocab] log-prob array each
Scorer = Callable[[list[list[int]], list[list[int]]], list[np.ndarray]]


@dataclass(frozen=True)
class Corpus:
    """Token-id prompts and their reference continuations (each ending with end-of-turn)."""

    prompts: list[list[int]]
    continuations: list[list[int]]

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.continuations) or not self.prompts:
            raise ValueError(
                f"a corpus needs as many continuations as prompts, at least one: "
                f"{len(self.prompts)} prompts, {len(self.continuations)} continuations"
            )
        if any(not p for p in self.prompts) or any(not c for c in self.continuations):
            raise ValueError("every prompt and every continuation needs at least one token")

    @property
    def tokens(self) -> int:
        return sum(len(c) for c in self.continuations)


def chat_corpus(tokenizer: Any, prompts: Sequence[Any], end_token: str | None = None) -> Corpus:
    """A corpus of world prompts (`messages`, `answer`): chat prompt -> reference answer + end.

    The end is `end_token` if given, else the tokenizer's end-of-turn token (`end_of_turn_id`).
    """
    end = tokenizer.end_of_turn_id if end_token is None else tokenizer.token_id(end_token)
    return Corpus(
        [tokenizer.encode_chat(list(p.messages)) for p in prompts],
        [tokenizer.encode(p.answer) + [end] for p in prompts],
    )


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float32 log-probs, the normalising sum taken in float64."""
    x = logits.astype(np.float32)
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return x


def perplexity(logprobs: Sequence[np.ndarray], continuations: Sequence[Sequence[int]]) -> float:
    """exp of the mean negative log-likelihood of every continuation token."""
    nll, n = 0.0, 0
    for lp, cont in zip(logprobs, continuations, strict=True):
        if lp.shape[0] != len(cont):
            raise ValueError(f"{lp.shape[0]} scored positions for a continuation of {len(cont)} tokens")
        nll -= float(lp[np.arange(len(cont)), cont].sum())
        n += len(cont)
    if n == 0:
        raise ValueError("nothing to score")
    return float(np.exp(nll / n))


def mean_kl(reference: Sequence[np.ndarray], model: Sequence[np.ndarray]) -> float:
    """Mean over positions of KL(reference || model) of two sets of log-prob rows, in nats."""
    total, n = 0.0, 0
    for ref, got in zip(reference, model, strict=True):
        if ref.shape != got.shape:
            raise ValueError(f"log-prob shapes differ: {ref.shape} vs {got.shape}")
        total += float((np.exp(ref) * (ref - got)).sum(dtype=np.float64))
        n += ref.shape[0]
    if n == 0:
        raise ValueError("nothing to compare")
    return total / n


def teacher_forced(
    step: Callable[[np.ndarray, np.ndarray, np.ndarray, Any], tuple[np.ndarray, Any]],
    empty_past: Callable[[int], Any],
    prompts: list[list[int]],
    continuations: list[list[int]],
    pad_id: int,
) -> list[np.ndarray]:
    """Score one left-padded batch through a (prefill, decode...) step function whose logits
    cover the last position: `step(ids, mask, positions, past) -> (logits [B, n, V], present)`."""
    ids, mask = left_pad(prompts, pad_id)
    positions = positions_of(mask)
    logits, past = step(ids, mask, positions, empty_past(len(prompts)))
    steps = max(len(c) for c in continuations)
    rows: list[list[np.ndarray]] = [[] for _ in prompts]
    for t in range(steps):
        lp = log_softmax(logits[:, -1])
        for r, cont in enumerate(continuations):
            if t < len(cont):
                rows[r].append(lp[r])
        if t == steps - 1:
            break
        token = np.array([[c[t] if t < len(c) else pad_id] for c in continuations], dtype=np.int64)
        mask = np.concatenate([mask, np.ones((len(prompts), 1), np.int64)], axis=1)
        positions = positions[:, -1:] + 1
        logits, past = step(token, mask, positions, past)
    return [np.stack(r) for r in rows]


def batched(scorer_batch: Scorer, batch_size: int) -> Scorer:
    """Run a batch scorer over the corpus in length-sorted batches, keeping the corpus order."""

    def score(prompts: list[list[int]], continuations: list[list[int]]) -> list[np.ndarray]:
        def run(idx: list[int]) -> list[np.ndarray]:
            return scorer_batch([prompts[i] for i in idx], [continuations[i] for i in idx])

        return by_length([len(p) for p in prompts], batch_size, run)

    return score


def ort_scorer(decoder: OrtDecoder, pad_id: int, batch_size: int = 32) -> Scorer:
    def one_batch(prompts: list[list[int]], continuations: list[list[int]]) -> list[np.ndarray]:
        return teacher_forced(decoder.step, decoder.empty_past, prompts, continuations, pad_id)

    return batched(one_batch, batch_size)


def backend_scorer(backend: Any) -> Scorer:
    """One sequence at a time through any single-sequence backend (prefill/decode), e.g. TensorRT."""

    def score(prompts: list[list[int]], continuations: list[list[int]]) -> list[np.ndarray]:
        out = []
        for prompt, cont in zip(prompts, continuations, strict=True):
            rows = [log_softmax(np.asarray(backend.prefill(prompt)))]
            for token in cont[:-1]:
                rows.append(log_softmax(np.asarray(backend.decode(token))))
            out.append(np.stack(rows))
        return out

    return score


def torch_scorer(model: Any, pad_id: int, batch_size: int = 32) -> Scorer:
    """Whole sequences in one forward pass each (the reference the incremental scorers match)."""

    def one_batch(prompts: list[list[int]], continuations: list[list[int]]) -> list[np.ndarray]:
        import torch

        full = [p + c[:-1] for p, c in zip(prompts, continuations, strict=True)]
        keep = max(len(c) for c in continuations)
        ids, mask = left_pad(full, pad_id)
        device = next(model.parameters()).device
        with torch.no_grad():
            logits = model(
                input_ids=torch.from_numpy(ids).to(device),
                attention_mask=torch.from_numpy(mask).to(device),
                position_ids=torch.from_numpy(positions_of(mask)).to(device),
                use_cache=False,
                logits_to_keep=keep,  # the LM head only where a continuation token is predicted
            ).logits.float()
        logits = logits.cpu().numpy()
        return [log_softmax(logits[r, keep - len(c) :]) for r, c in enumerate(continuations)]

    return batched(one_batch, batch_size)


def remembered(scorer: Scorer) -> Scorer:
    """`scorer`, computing each (prompts, continuations) it is given once and keeping the
    log-probs in memory (float32): a base every stage is compared with is scored once per run."""
    seen: dict[tuple, list[np.ndarray]] = {}

    def score(prompts: list[list[int]], continuations: list[list[int]]) -> list[np.ndarray]:
        key = (tuple(map(tuple, prompts)), tuple(map(tuple, continuations)))
        if key not in seen:
            seen[key] = [x.astype(np.float32) for x in scorer(prompts, continuations)]
        return seen[key]

    return score


def score_corpus(scorer: Scorer, corpus: Corpus) -> list[np.ndarray]:
    return scorer(corpus.prompts, corpus.continuations)

"""General drift: how far a model moved from its base on chats that have nothing to do with films.

`bench quality`'s perplexity and KL run on held-out retain chats, which are still about films.
"Everything else stays the same" needs text outside the demo world: the generic prompts of
`benchmarks/world/generic.jsonl` (geography, science, arithmetic, cooking, health, ...). Each
reference answer, followed by the tokenizer's end-of-turn token, is scored teacher-forced by the
base and by the model (any `perplexity.Scorer`: torch, onnxruntime, an engine), and we report

- kl_per_token: mean over answer positions of KL(p_base || p_model), in nats;
- perplexity_base / perplexity: exp of the mean negative log-likelihood of the reference tokens.

The base's log-probabilities are [tokens, vocab] floats (about 1 GB in fp32 for a 49k vocabulary
and 5k tokens), so they are never cached: both models score the corpus chunk by chunk and only
sums are kept. The result is small, though: `remember` stores it under both models' identities
and the corpus's tokens, and `recall` reads it back (training measures an adapter's drift, the
quality table asks for the same numbers again). numpy only; the torch scorer imports torch inside.

    from orin_unlearn.benchmarks import drift, perplexity
    drift.general_drift(perplexity.torch_scorer(base, pad), perplexity.torch_scorer(model, pad), tok)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orin_unlearn.benchmarks.perplexity import Corpus, Scorer, mean_kl, perplexity, score_corpus
from orin_unlearn.benchmarks.world.generic import GenericPrompt, generic_prompts
from orin_unlearn.edge.cache import cached_map, key_digest, store_json

END_OF_TURN = "<|im_end|>"


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that closes an assistant turn: the tokenizer's own `end_of_turn_id` where it has
    one (taken from its chat template), else ChatML's <|im_end|>."""
    eot = getattr(tokenizer, "end_of_turn_id", None)
    return int(eot) if eot is not None else tokenizer.token_id(END_OF_TURN)


def drift_corpus(tokenizer: Any, prompts: Sequence[GenericPrompt]) -> Corpus:
    """Chat prompt -> reference answer + end of turn, for each prompt."""
    end = end_of_turn_id(tokenizer)
    return Corpus(
        [tokenizer.encode_chat(list(p.messages)) for p in prompts],
        [tokenizer.encode(p.answer) + [end] for p in prompts],
    )


@dataclass(frozen=True)
class Drift:
    """How far a model moved from its reference on chats outside the film world: KL(reference ||
    model) in nats per scored token, and both perplexities, over `n` prompts / `tokens` tokens."""

    n: int
    tokens: int
    kl_per_token: float
    perplexity_base: float
    perplexity: float

    def to_json(self) -> dict:
        """As an unlearning run's `drift` stores it (`kl` first)."""
        return {"kl": self.kl_per_token, "n": self.n, "tokens": self.tokens} | {
            "perplexity_base": self.perplexity_base,
            "perplexity": self.perplexity,
        }

    @classmethod
    def from_json(cls, data: dict) -> Drift:
        return cls(data["n"], data["tokens"], data["kl"], data["perplexity_base"], data["perplexity"])


def _key(model: dict, reference: dict, corpus: Corpus) -> dict:
    return {
        "model": model,
        "reference": reference,
        "corpus": key_digest([corpus.prompts, corpus.continuations]),
    }


def remember(model: dict, reference: dict, corpus: Corpus, result: Drift) -> None:
    """Store `result`, the drift of the model with identity `model` from `reference` on `corpus`."""
    store_json("drift", _key(model, reference, corpus), result.to_json())


def recall(model: dict, reference: dict, corpus: Corpus) -> Drift | None:
    """The drift `remember` stored for these identities and exactly this corpus, else None."""
    found = cached_map("drift", _key(model, reference, corpus))
    return Drift.from_json(found) if found else None


def general_drift(
    reference_scorer: Scorer,
    model_scorer: Scorer,
    tokenizer: Any,
    prompts: Sequence[GenericPrompt] | None = None,
    chunk_size: int = 32,
) -> Drift:
    """KL(reference || model) per token and both perplexities on `prompts` (default: the shipped
    generic prompts), teacher-forced on their reference answers, `chunk_size` prompts at a time."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    prompts = list(prompts) if prompts is not None else generic_prompts()
    corpus = drift_corpus(tokenizer, prompts)
    kl_sum = nll_base = nll_model = 0.0
    for start in range(0, len(prompts), chunk_size):
        chunk = Corpus(
            corpus.prompts[start : start + chunk_size], corpus.continuations[start : start + chunk_size]
        )
        reference = score_corpus(reference_scorer, chunk)
        model = score_corpus(model_scorer, chunk)
        kl_sum += mean_kl(reference, model) * chunk.tokens
        nll_base += math.log(perplexity(reference, chunk.continuations)) * chunk.tokens
        nll_model += math.log(perplexity(model, chunk.continuations)) * chunk.tokens
    tokens = corpus.tokens
    return Drift(
        n=len(prompts),
        tokens=tokens,
        kl_per_token=kl_sum / tokens,
        perplexity_base=math.exp(nll_base / tokens),
        perplexity=math.exp(nll_model / tokens),
    )

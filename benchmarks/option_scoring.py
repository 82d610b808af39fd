"""Teacher-forced log-probabilities of answer options, batched, on any artifact.

Each question's options are scored as the assistant's reply to it: the mean per-token
log-probability of the option's tokens after the chat prompt. Forward passes only, and few of
them: the prompt part every question shares (the system prompt, the start of the user's turn)
is run once; the rest of each prompt once per question, in batches of questions of the same
length (no padding, so even a graph that reads positions off its mask runs them together); its
KV cache is then repeated once per option and the options are fed a token at a time (right
padded), reading each step's last-position logits, which is all an exported graph returns.

A `Steps` is what a model needs for this: `step(ids, mask, positions, past) -> (logits, present)`
(logits [batch, n, vocab], the last position is read), `empty_past(batch)`, `take(past, rows)`
(the cache of those rows, repeats allowed) and `first(past, n)` (the first n rows). `OrtSteps` wraps an onnxruntime decoder,
`TorchSteps` a transformers model; a backend that only runs one sequence (TensorRT) is scored
by `sequential_options`.

    scorer = options_scorer(TorchSteps(model))
    scorer(prompt_ids, option_ids)        # [[mean log-prob of each option] per question]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

# (prompt ids per question, option ids per question, on_batch=) -> mean per-token log-prob of each
# option; on_batch(n) is called after each batch of n questions (progress)
OptionScorer = Callable[..., list[list[float]]]
BATCH = 32  # questions per batch; with 5 options, 160 rows of KV cache
ROWS = 40  # option rows per forward pass where a model reads every position (little padding)


class Steps(Protocol):
    def step(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: Any) -> tuple: ...

    def empty_past(self, batch: int) -> Any: ...

    def take(self, past: Any, rows: np.ndarray) -> Any: ...

    def first(self, past: Any, n: int) -> Any: ...


def token_logprobs(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """log softmax(logits)[row, tokens[row]] for each row of a [rows, vocab] array: the
    exponentials in float32, their sum in float64 (within 1e-7 of an all-float64 softmax, and
    several times faster on a 49k vocabulary)."""
    x = logits.astype(np.float32, copy=False)
    top = x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(x - top).sum(axis=-1, dtype=np.float64)) + top[:, 0]
    return x[np.arange(len(x)), tokens] - lse


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """The length of the token prefix every row shares, leaving each row at least one token."""
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for i in range(n):
        if any(r[i] != first[i] for r in rows):
            return i
    return max(n, 0)


def _ones(rows: int, width: int) -> np.ndarray:
    return np.ones((rows, width), dtype=np.int64)


def _positions(rows: int, start: int, n: int) -> np.ndarray:
    return np.broadcast_to(np.arange(start, start + n, dtype=np.int64), (rows, n)).copy()


def score_batch(
    steps: Steps,
    prefix: tuple[int, Any] | None,
    suffixes: list[list[int]],
    options: list[list[list[int]]],
) -> list[list[float]]:
    """Mean per-token log-prob of each option of questions whose prompts are `prefix` (its length
    and batch-1 KV cache, or None) followed by a suffix, all suffixes of one length."""
    n = len(suffixes[0])
    if prefix is None:
        start, past = 0, steps.empty_past(len(suffixes))
    else:  # the shared prompt part's cache, once per question
        start, past = prefix[0], steps.take(prefix[1], np.zeros(len(suffixes), dtype=np.int64))
    logits, past = steps.step(
        np.asarray(suffixes, dtype=np.int64),
        _ones(len(suffixes), start + n),
        _positions(len(suffixes), start, n),
        past,
    )
    rows = [(q, opt) for q, item in enumerate(options) for opt in item]
    if any(not opt for _, opt in rows):
        raise ValueError("an option has no tokens")
    # one row per option, longest first: the rows still fed at step t are the first ones, so the
    # live rows' cache is a slice and finished rows cost nothing
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r][1]))
    owner = np.array([rows[r][0] for r in order], dtype=np.int64)
    lengths = np.array([len(rows[r][1]) for r in order])
    tokens = np.zeros((len(rows), int(lengths[0])), dtype=np.int64)
    for i, r in enumerate(order):
        tokens[i, : lengths[i]] = rows[r][1]
    last, past = logits[owner, -1], steps.take(past, owner)
    total = np.zeros(len(rows))
    if hasattr(steps, "all_logits"):  # every option token in one pass: the model's logits at each
        total += token_logprobs(last, tokens[:, 0])
        _rest(steps, past, start + n, tokens, lengths, total)
        return _by_item(total, order, lengths, options)
    for t in range(int(lengths[0])):
        live = int((lengths > t).sum())
        total[:live] += token_logprobs(last[:live], tokens[:live, t])
        feed = int((lengths > t + 1).sum())
        if feed == 0:
            break
        here = start + n + t
        past = steps.first(past, feed)
        logits, past = steps.step(
            tokens[:feed, t : t + 1], _ones(feed, here + 1), _positions(feed, here, 1), past
        )
        last = logits[:, -1]
    return _by_item(total, order, lengths, options)


def _rest(
    steps: Any, past: Any, start: int, tokens: np.ndarray, lengths: np.ndarray, total: np.ndarray
) -> None:
    """Add the log-probs of every option token after the first, from forward passes over the
    right-padded options, `ROWS` rows of similar length at a time (a pad only ever follows its
    row's last token, so it changes nothing that is read)."""
    feed = int((lengths > 1).sum())
    for lo in range(0, feed, ROWS):
        hi = min(lo + ROWS, feed)
        width = int(lengths[lo])  # the longest of these rows (they are sorted longest first)
        logits = steps.all_logits(
            tokens[lo:hi, : width - 1],
            _ones(hi - lo, start + width - 1),
            _positions(hi - lo, start, width - 1),
            steps.rows(past, lo, hi),
        )
        for t in range(1, width):
            live = lo + int((lengths[lo:hi] > t).sum())
            total[lo:live] += token_logprobs(logits[: live - lo, t - 1], tokens[lo:live, t])


def _by_item(total: np.ndarray, order: list[int], lengths: np.ndarray, options: list) -> list[list[float]]:
    means = np.empty(len(total))
    means[order] = total / lengths
    out, i = [], 0
    for item in options:
        out.append(means[i : i + len(item)].tolist())
        i += len(item)
    return out


def options_scorer(steps: Steps, batch: int = BATCH) -> OptionScorer:
    """Score options in batches of `batch` questions of the same prompt length after the prompt
    part they all share (run once)."""

    def score(
        prompts: list[list[int]],
        options: list[list[list[int]]],
        on_batch: Callable[[int], None] | None = None,
    ) -> list[list[float]]:
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        if not prompts:
            return []
        shared = common_prefix(prompts)
        prefix = None
        if shared:
            ids = np.asarray([prompts[0][:shared]], dtype=np.int64)
            _, past = steps.step(ids, _ones(1, shared), _positions(1, 0, shared), steps.empty_past(1))
            prefix = (shared, past)
        by_length: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_length.setdefault(len(p), []).append(i)
        out: list[list[float] | None] = [None] * len(prompts)
        for idx in by_length.values():
            for s in range(0, len(idx), batch):
                chunk = idx[s : s + batch]
                got = score_batch(
                    steps, prefix, [prompts[i][shared:] for i in chunk], [options[i] for i in chunk]
                )
                for i, scores in zip(chunk, got, strict=True):
                    out[i] = scores
                if on_batch is not None:
                    on_batch(len(chunk))
        return out  # type: ignore[return-value]

    return score


class OrtSteps:
    """An onnxruntime decoder (`OrtDecoder`): its own step and KV layout (one array per layer
    and kind; a fused graph keeps a list of such arrays per row)."""

    def __init__(self, decoder: Any):
        self.decoder = decoder

    def step(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: Any) -> tuple:
        return self.decoder.step(ids, mask, positions, past)

    def empty_past(self, batch: int) -> Any:
        return self.decoder.empty_past(batch)

    def take(self, past: Any, rows: np.ndarray) -> Any:
        if self.decoder.shape.fused:  # one KV list per row, never written in place
            return [past[r] for r in rows]
        return [a[rows] for a in past]

    def first(self, past: Any, n: int) -> Any:
        if self.decoder.shape.fused:
            return past[:n]
        return [np.ascontiguousarray(a[:n]) for a in past]


class TorchSteps:
    """A transformers causal LM (or a PEFT model over one): a forward pass with its KV cache as
    (key, value) tensors per layer, keeping only the last position's logits (`step`), or every
    position's (`all_logits`: an option's tokens scored in one pass)."""

    def __init__(self, model: Any):
        self.model = model

    def step(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: Any) -> tuple:
        out = self._forward(ids, mask, positions, past, keep=1)
        present = tuple((layer.keys, layer.values) for layer in out.past_key_values.layers)
        return out.logits.float().cpu().numpy(), present

    def all_logits(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: Any) -> np.ndarray:
        """Logits at every position of `ids` ([batch, n, vocab]), the cache not kept."""
        return self._forward(ids, mask, positions, past, keep=0).logits.float().cpu().numpy()

    def _forward(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: Any, keep: int):
        import torch
        from transformers import DynamicCache

        device = next(self.model.parameters()).device
        # no padding ever precedes a token that is read (prompts of one length, options padded
        # on the right), so the plain causal mask is the mask: none is built from `mask`
        with torch.inference_mode():
            return self.model(
                input_ids=torch.from_numpy(ids).to(device),
                position_ids=torch.from_numpy(positions).to(device),
                past_key_values=DynamicCache(past) if past else DynamicCache(),
                use_cache=True,
                logits_to_keep=keep,
            )

    def empty_past(self, batch: int) -> Any:
        return ()

    def take(self, past: Any, rows: np.ndarray) -> Any:
        import torch

        if past and past[0][0].shape[0] == 1 and not rows.any():  # one row to many: a view
            return tuple((k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1)) for k, v in past)
        index = torch.from_numpy(rows).to(past[0][0].device) if past else None
        return tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in past)

    def first(self, past: Any, n: int) -> Any:
        return self.rows(past, 0, n)

    def rows(self, past: Any, lo: int, hi: int) -> Any:
        return tuple((k[lo:hi], v[lo:hi]) for k, v in past)


def sequential_options(backend: Any) -> OptionScorer:
    """Options scored one sequence at a time through a backend's `prefill` / `decode` (the
    TensorRT engine): the prompt is run again for every option."""

    def score(
        prompts: list[list[int]],
        options: list[list[list[int]]],
        on_batch: Callable[[int], None] | None = None,
    ) -> list[list[float]]:
        out = []
        for prompt, item in zip(prompts, options, strict=True):
            scores = []
            for option in item:
                logits = np.asarray(backend.prefill(list(prompt)))[None]
                total = 0.0
                for t, token in enumerate(option):
                    total += float(token_logprobs(logits, np.array([token]))[0])
                    if t < len(option) - 1:
                        logits = np.asarray(backend.decode(int(token)))[None]
                scores.append(total / len(option))
            out.append(scores)
            if on_batch is not None:
                on_batch(1)
        return out

    return score

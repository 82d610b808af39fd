"""Teacher-forced option scores: the batched, prefix-sharing scorer equals scoring each prompt +
option in full, options sharing a token prefix are told apart, a model that knows an answer ranks
it first, and the tiny model's torch scores match a plain forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from orin_unlearn.benchmarks.option_scoring import (
    OrtSteps,
    TorchSteps,
    common_prefix,
    options_scorer,
    sequential_options,
    token_logprobs,
)

VOCAB = 11


def history_logits(history: tuple[int, ...]) -> np.ndarray:
    """A model whose next-token logits depend on the whole history (so a wrong cache shows)."""
    rng = np.random.default_rng(abs(hash(history)) % (2**32))
    return rng.normal(size=VOCAB) * 3


class HistorySteps:
    """`Steps` over `history_logits`: its cache is each row's token history (rows are arrays)."""

    def step(self, ids, mask, positions, past):
        assert mask.shape == (len(ids), past.shape[1] + ids.shape[1]) and mask.all()
        assert (positions == np.arange(past.shape[1], mask.shape[1])).all()
        present = np.concatenate([past, ids], axis=1)
        return np.stack([history_logits(tuple(row))[None] for row in present]), present

    def empty_past(self, batch):
        return np.zeros((batch, 0), dtype=np.int64)

    def take(self, past, rows):
        return past[rows]

    def first(self, past, n):
        return past[:n]


def brute_force(prompt, option):
    total = 0.0
    for t, token in enumerate(option):
        logits = history_logits(tuple(prompt + option[:t]))
        total += float(token_logprobs(logits[None], np.array([token]))[0])
    return total / len(option)


def test_batched_scores_equal_scoring_each_option_in_full():
    rng = np.random.default_rng(0)
    shared = [1, 2, 3]
    prompts = [shared + list(rng.integers(0, VOCAB, n)) for n in (2, 3, 2, 4, 3, 2, 1)]
    options = [[list(rng.integers(0, VOCAB, k)) for k in rng.integers(1, 5, 5)] for _ in prompts]
    options[0] = [[4, 5, 6], [4, 5, 7], [4, 5], [4], [8, 4, 5]]  # shared token prefixes
    got = options_scorer(HistorySteps(), batch=2)(prompts, options)
    for prompt, item, scores in zip(prompts, options, got, strict=True):
        assert scores == pytest.approx([brute_force(prompt, o) for o in item], abs=1e-9)
    assert len(set(got[0])) == 5  # options that share a prefix still get their own score


def test_a_model_that_knows_the_answer_ranks_it_first():
    """Hand-made items over a model that knows one answer per question; every option ends with the
    end-of-turn token (10), as a whole reply does, so a right answer cut short is not right."""
    end = 10

    class Knows(HistorySteps):
        answers = {(1, 2): [7, 8, 9, end], (1, 3): [4, 4, end]}

        def step(self, ids, mask, positions, past):
            present = np.concatenate([past, ids], axis=1)
            logits = np.zeros((len(present), 1, VOCAB))
            for r, row in enumerate(present):
                answer, done = self.answers.get(tuple(row[:2]), []), len(row) - 2
                if 0 <= done < len(answer):
                    logits[r, 0, answer[done]] = 5.0
            return logits, present

    prompts = [[1, 2], [1, 3]]
    options = [
        [[7, 8, 9], [7, 8, 2], [7, 2, 9], [7], [9, 8, 7]],
        [[4, 4], [4, 5], [5, 4], [4], [4, 4, 4]],  # a right answer cut short, or run on
    ]
    options = [[o + [end] for o in item] for item in options]
    scores = options_scorer(Knows())(prompts, options)
    for row in scores:
        assert row[0] > max(row[1:])


def test_common_prefix_leaves_every_row_a_token():
    assert common_prefix([[1, 2, 3], [1, 2, 4]]) == 2
    assert common_prefix([[1, 2], [1, 2, 3]]) == 1
    assert common_prefix([[5], [6]]) == 0


def test_torch_scores_equal_a_plain_forward_pass(base_dir):
    import torch

    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model

    model, tok = load_model(base_dir), ChatTokenizer(base_dir)
    questions = ["Who directed Inception?", "When was Memento released?", "Who stars in Heat and Ran?"]
    prompts = [tok.encode_chat([{"role": "user", "content": q}]) for q in questions]
    texts = ["Christopher Nolan", "Christopher Columbus", "2000", "Al Pacino", "Christopher"]
    options = [[tok.encode(t) for t in texts]] * 3
    got = options_scorer(TorchSteps(model), batch=2)(prompts, options)
    for prompt, scores in zip(prompts, got, strict=True):
        for text, score in zip(texts, scores, strict=True):
            option = tok.encode(text)
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt + option])).logits[0].numpy()
            want = token_logprobs(logits[len(prompt) - 1 : -1], np.array(option)).mean()
            assert score == pytest.approx(want, abs=2e-4)


def test_onnx_and_sequential_scores_equal_torch(onnx_dir, base_dir):
    from orin_unlearn.edge.backends.ort_backend import OrtBackend
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model

    tok = ChatTokenizer(base_dir)
    prompts = [tok.encode_chat([{"role": "user", "content": q}]) for q in ("Who directed Heat?", "Ran?")]
    options = [[tok.encode(t) for t in ("Michael Mann", "Akira Kurosawa", "1995", "Mann")]] * 2
    want = options_scorer(TorchSteps(load_model(base_dir)))(prompts, options)
    backend = OrtBackend.from_dir(onnx_dir)
    for scorer in (options_scorer(OrtSteps(backend.decoder)), sequential_options(backend)):
        assert np.allclose(scorer(prompts, options), want, atol=2e-4)

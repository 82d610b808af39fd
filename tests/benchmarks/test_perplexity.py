"""Perplexity and KL on hand-made distributions, and teacher forcing that matches a full forward
pass on the real exported graph (an off-by-one position would fail it)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orin_unlearn.benchmarks import perplexity
from orin_unlearn.benchmarks.perplexity import Corpus, log_softmax, mean_kl


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    uniform = [np.full((3, 50), -math.log(50)), np.full((1, 50), -math.log(50))]
    assert perplexity.perplexity(uniform, [[1, 2, 3], [4]]) == pytest.approx(50.0)


def test_perplexity_counts_only_the_reference_tokens():
    rows = log_softmax(np.array([[10.0, 0.0], [0.0, 10.0]]))
    sure = perplexity.perplexity([rows], [[0, 1]])
    wrong = perplexity.perplexity([rows], [[1, 0]])
    assert sure == pytest.approx(1.0, abs=1e-3) and wrong > 1e4
    with pytest.raises(ValueError, match="2 scored positions"):
        perplexity.perplexity([rows], [[0, 1, 1]])


def test_kl_is_zero_for_the_same_model_and_known_otherwise():
    p = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    assert mean_kl([p], [p]) == pytest.approx(0.0)
    q = np.log(np.array([[0.9, 0.1], [0.25, 0.75]]))
    expected = (0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1) + 0.0) / 2
    assert mean_kl([p], [q]) == pytest.approx(expected)
    assert mean_kl([q], [p]) != pytest.approx(expected)  # KL is not symmetric: direction matters


def test_corpus_rejects_empty_or_mismatched_input():
    with pytest.raises(ValueError):
        Corpus([[1]], [])
    with pytest.raises(ValueError):
        Corpus([[1]], [[]])


def test_teacher_forcing_on_a_bigram_model():
    """A model whose next-token logits depend only on the last token: every scored row must be the
    row of the token before it (the prompt's last token, then each continuation token)."""
    table = np.random.default_rng(0).normal(size=(8, 8))

    def step(ids, mask, positions, past):
        return table[ids[:, -1]][:, None, :], past

    prompts, conts = [[1, 2, 3], [5]], [[4, 6, 7], [2]]
    got = perplexity.teacher_forced(step, lambda batch: None, prompts, conts, pad_id=0)
    assert [g.shape for g in got] == [(3, 8), (1, 8)]
    np.testing.assert_allclose(got[0], log_softmax(table[[3, 4, 6]]))
    np.testing.assert_allclose(got[1], log_softmax(table[[5]]))


@pytest.fixture(scope="module")
def corpus(onnx_dir, prompts):
    from orin_unlearn.edge.tokenizer import ChatTokenizer

    retain = [p for p in prompts if p.split == "heldout"][:9]
    return perplexity.chat_corpus(ChatTokenizer(onnx_dir), retain)


def test_incremental_scorers_match_a_full_forward_pass(onnx_dir, base_dir, corpus):
    from orin_unlearn.edge.backends.ort_backend import OrtBackend, OrtDecoder
    from orin_unlearn.train.models import load_model

    pad = corpus.prompts[0][0]
    full = perplexity.score_corpus(perplexity.torch_scorer(load_model(base_dir), pad, batch_size=4), corpus)
    ort = perplexity.score_corpus(perplexity.ort_scorer(OrtDecoder(onnx_dir / "model.onnx"), pad, 4), corpus)
    one = perplexity.score_corpus(perplexity.backend_scorer(OrtBackend.from_dir(onnx_dir)), corpus)
    assert [x.shape[0] for x in full] == [len(c) for c in corpus.continuations]
    for a, b, c in zip(full, ort, one, strict=True):
        np.testing.assert_allclose(b, a, atol=2e-4)
        np.testing.assert_allclose(c, a, atol=2e-4)
    assert mean_kl(full, ort) < 1e-6
    assert 1.0 <= perplexity.perplexity(full, corpus.continuations) < 3.0  # the base knows these answers

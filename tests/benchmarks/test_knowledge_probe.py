"""The linear director probe: the regression on hand-made data, its refusals, and what it reads
from the shipped base (which knows its directors)."""

from __future__ import annotations

import numpy as np
import pytest

from orin_unlearn.benchmarks.knowledge_probe import director_probe, fit_logistic, predict


def test_logistic_regression_separates_two_clusters_and_generalises():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 0.5, (50, 8)), rng.normal(1, 0.5, (50, 8))])
    y = np.array([0.0] * 50 + [1.0] * 50)
    fit = fit_logistic(x, y)
    assert (predict(fit, x) == (y > 0.5)).mean() == 1.0
    fresh = np.concatenate([rng.normal(-1, 0.5, (20, 8)), rng.normal(1, 0.5, (20, 8))])
    assert (predict(fit, fresh) == np.array([False] * 20 + [True] * 20)).mean() >= 0.95
    noise = rng.normal(0, 1, (100, 8))
    labels = rng.integers(0, 2, 100).astype(float)
    held = rng.normal(0, 1, (200, 8))
    assert 0.3 < (predict(fit_logistic(noise, labels), held) == (rng.integers(0, 2, 200) > 0)).mean() < 0.7


def test_probe_refuses_one_class_and_director_concepts(catalogue, prompts):
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(np.ones((4, 2)), np.ones(4))
    with pytest.raises(ValueError, match="film concept"):
        director_probe(None, None, catalogue, catalogue.concept("Christopher Nolan"), prompts)


def test_the_base_carries_inception_as_a_nolan_film(catalogue, prompts, base_dir):
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model

    rows = director_probe(
        load_model(base_dir), ChatTokenizer(base_dir), catalogue, catalogue.concept("Inception"), prompts
    )
    assert [r["layer"] for r in rows] == list(range(5))
    # the embeddings at the last prompt token are the chat template's: nothing to read there
    assert rows[0]["val_accuracy"] == 0.5
    assert rows[-1]["val_accuracy"] >= 0.8  # generalises to Nolan films it never trained on
    assert rows[-1]["concept_as_director"] >= 0.9


def test_batched_residuals_are_each_prompts_own(catalogue, prompts, base_dir):
    """Left-padded batches of prompts of different lengths give each prompt's residuals alone."""
    import torch

    from orin_unlearn.benchmarks.knowledge_probe import residuals
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model

    model, tokenizer = load_model(base_dir), ChatTokenizer(base_dir)
    some = [p for p in prompts if p.subjects == ("Inception",)][:3] + prompts[-4:]
    assert len({len(tokenizer.encode_chat(list(p.messages))) for p in some}) > 1
    batched = residuals(model, tokenizer, some, batch_size=4)
    with torch.no_grad():
        for k, p in enumerate(some):
            ids = torch.tensor([tokenizer.encode_chat(list(p.messages))])
            alone = model(input_ids=ids, output_hidden_states=True).hidden_states
            expected = torch.stack([h[0, -1] for h in alone]).numpy()
            np.testing.assert_allclose(batched[:, k], expected, atol=1e-4)

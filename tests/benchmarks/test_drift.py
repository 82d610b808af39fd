"""General drift on the generic prompts with the shipped tiny base: zero against itself, positive
for a perturbed copy, the same whatever the chunking, and equal to a direct computation."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from orin_unlearn.benchmarks import drift
from orin_unlearn.benchmarks.perplexity import Corpus, mean_kl, perplexity, score_corpus, torch_scorer
from orin_unlearn.benchmarks.world.generic import generic_prompts

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(base_dir):
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model

    return load_model(base_dir), ChatTokenizer(base_dir)


@pytest.fixture(scope="module")
def perturbed(tiny):
    import copy

    model, _ = tiny
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = other.model.layers[1].mlp.down_proj.weight
        w.add_(torch.randn(w.shape, generator=gen) * 0.02)
    return other


@pytest.fixture(scope="module")
def prompts():
    return generic_prompts()[::5]  # 51 prompts, every topic: keeps the test short


def test_kl_of_the_base_with_itself_is_zero(tiny, prompts):
    model, tok = tiny
    scorer = torch_scorer(model, tok.pad_token_id)
    out = drift.general_drift(scorer, scorer, tok, prompts)
    assert out.n == len(prompts)
    assert out.tokens == drift.drift_corpus(tok, prompts).tokens > len(prompts)
    assert abs(out.kl_per_token) < 1e-9
    assert out.perplexity == pytest.approx(out.perplexity_base, rel=1e-12)
    assert 1.0 < out.perplexity < math.inf


def test_a_perturbed_copy_drifts(tiny, perturbed, prompts):
    model, tok = tiny
    out = drift.general_drift(
        torch_scorer(model, tok.pad_token_id), torch_scorer(perturbed, tok.pad_token_id), tok, prompts
    )
    assert out.kl_per_token > 1e-4
    assert math.isfinite(out.perplexity) and out.perplexity > 1.0
    assert out.perplexity != pytest.approx(out.perplexity_base, rel=1e-6)


def test_chunking_does_not_change_the_result(tiny, perturbed, prompts):
    model, tok = tiny
    prompts = prompts[::3]
    base, other = torch_scorer(model, tok.pad_token_id), torch_scorer(perturbed, tok.pad_token_id)
    whole = drift.general_drift(base, other, tok, prompts, chunk_size=len(prompts))
    pieces = drift.general_drift(base, other, tok, prompts, chunk_size=4)
    for key in ("kl_per_token", "perplexity_base", "perplexity"):
        assert getattr(pieces, key) == pytest.approx(getattr(whole, key), rel=1e-6), key
    # and the whole-corpus numbers are perplexity.py's, on answers that end with end-of-turn
    corpus = drift.drift_corpus(tok, prompts)
    assert all(c[-1] == tok.token_id("<|im_end|>") for c in corpus.continuations)
    ref, got = score_corpus(base, corpus), score_corpus(other, corpus)
    assert whole.kl_per_token == pytest.approx(mean_kl(ref, got), rel=1e-9)
    assert whole.perplexity == pytest.approx(perplexity(got, corpus.continuations), rel=1e-9)


def test_end_of_turn_comes_from_the_tokenizer_when_it_has_one(tiny):
    _, tok = tiny

    class WithEndOfTurn:
        end_of_turn_id = 7

        def token_id(self, token):
            raise AssertionError("must not fall back")

    assert drift.end_of_turn_id(WithEndOfTurn()) == 7
    assert drift.end_of_turn_id(tok) == getattr(tok, "end_of_turn_id", tok.token_id("<|im_end|>"))


def test_drift_imports_without_torch():
    code = (
        "import sys, orin_unlearn.benchmarks.drift, orin_unlearn.edge.progress; "
        "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_a_remembered_drift_is_recalled_only_for_the_same_models_and_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("ORIN_UNLEARN_CACHE", str(tmp_path))
    corpus = Corpus([[1, 2, 3]], [[4, 5]])
    got = drift.Drift(n=1, tokens=2, kl_per_token=0.25, perplexity_base=3.0, perplexity=3.5)
    drift.remember({"w": "adapter"}, {"w": "base"}, corpus, got)
    assert drift.recall({"w": "adapter"}, {"w": "base"}, corpus) == got
    assert drift.recall({"w": "other"}, {"w": "base"}, corpus) is None
    assert drift.recall({"w": "adapter"}, {"w": "base"}, Corpus([[1, 2, 3]], [[4, 6]])) is None

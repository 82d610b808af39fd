"""Token choice: greedy, seeded sampling, top-k / top-p truncation, repetition penalty, validation."""

from __future__ import annotations

import numpy as np
import pytest

from orin_unlearn.edge.sampling import SamplingParams, apply_repetition_penalty, choose

LOGITS = np.array([2.0, 1.0, 0.5, -1.0, 3.0], dtype=np.float32)


def draws(params: SamplingParams, n: int = 400, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [choose(LOGITS, params, rng) for _ in range(n)]


def test_greedy_takes_the_arg_max():
    assert choose(LOGITS, SamplingParams(), np.random.default_rng(0)) == 4


def test_same_seed_same_tokens_other_seed_other_tokens():
    params = SamplingParams(temperature=1.0, seed=7)
    assert draws(params, seed=7) == draws(params, seed=7)
    assert draws(params, seed=7) != draws(params, seed=8)


def test_top_k_keeps_only_the_k_best():
    assert set(draws(SamplingParams(temperature=2.0, top_k=2))) == {0, 4}


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = np.exp(LOGITS) / np.exp(LOGITS).sum()  # sorted: 4 (0.63), 0 (0.23), 1 (0.09), ...
    assert probs[4] < 0.7 < probs[4] + probs[0]
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.7))) == {0, 4}
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.5))) == {4}


def test_temperature_sharpens_and_flattens():
    cold = draws(SamplingParams(temperature=0.2))
    hot = draws(SamplingParams(temperature=3.0))
    assert cold.count(4) > 0.95 * len(cold)
    assert 0.3 * len(hot) < hot.count(4) < 0.7 * len(hot)


def test_repetition_penalty_lowers_seen_tokens_like_transformers():
    out = apply_repetition_penalty(LOGITS, [4, 3, 4], 2.0)
    np.testing.assert_allclose(out, [2.0, 1.0, 0.5, -2.0, 1.5])
    assert choose(LOGITS, SamplingParams(repetition_penalty=2.0), np.random.default_rng(0), [4]) == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_new_tokens", 0),
        ("temperature", -0.1),
        ("top_p", 0.0),
        ("top_k", -1),
        ("repetition_penalty", 0.0),
    ],
)
def test_out_of_range_values_are_named(field, value):
    with pytest.raises(ValueError, match=f"^{field}="):
        SamplingParams(**{field: value})


def test_stop_strings_are_bounded():
    with pytest.raises(ValueError, match="stop"):
        SamplingParams(stop=("a", "b", "c", "d", "e"))
    with pytest.raises(ValueError, match="stop"):
        SamplingParams(stop=("",))

"""Token choice: greedy, seeded sampling, top-k / top-p truncation, repetition penalty, logit bias,
log-probabilities, validation, and no NaN from any accepted value or any logits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from orin_unlearn.edge.sampling import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    PENALTY_RANGE,
    SamplingError,
    SamplingParams,
    apply_repetition_penalty,
    choose,
    token_logprobs,
)

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


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", 5e-324),
        ("temperature", 0.009),
        ("temperature", float("nan")),
        ("temperature", float("inf")),
        ("repetition_penalty", 1e-38),
        ("repetition_penalty", 10.5),
        ("top_logprobs", 21),
    ],
)
def test_values_that_could_make_the_distribution_nan_are_refused(field, value):
    with pytest.raises(SamplingError, match=f"^{field}=") as refused:
        SamplingParams(**{field: value})
    assert refused.value.param == field


@pytest.mark.parametrize("bias", [((1, 100.5),), ((1, float("nan")),), ((-1, 1.0),)])
def test_logit_bias_is_bounded(bias):
    with pytest.raises(SamplingError) as refused:
        SamplingParams(logit_bias=bias)
    assert refused.value.param == "logit_bias"


FLOAT32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@settings(max_examples=300, deadline=None)
@given(
    row=arrays(np.float32, 6, elements=FLOAT32),
    temperature=st.sampled_from([0.0, MIN_TEMPERATURE, 1.0, MAX_TEMPERATURE]),
    penalty=st.sampled_from([*PENALTY_RANGE, 1.0]),
    top_p=st.sampled_from([5e-324, 0.5, 1.0]),
    top_k=st.sampled_from([0, 1, 3]),
    bias=st.sampled_from([(), ((2, 100.0),), ((0, -100.0), (5, 100.0))]),
)
def test_choose_always_returns_a_token(row, temperature, penalty, top_p, top_k, bias):
    params = SamplingParams(
        temperature=temperature, repetition_penalty=penalty, top_p=top_p, top_k=top_k, logit_bias=bias
    )
    token = choose(row, params, np.random.default_rng(0), previous=[0, 1, 2])
    assert 0 <= token < row.size
    if np.any(row > -np.inf):  # something to choose besides NaN
        assert not np.isnan(row[token])
    entry = token_logprobs(row, token, top=3)
    assert entry.logprob <= 0 and all(np.isfinite(lp) for _, lp in entry.top)


def test_a_tiny_temperature_at_the_floor_is_near_greedy():
    huge = np.array([3.0e38, -3.0e38, 2.9e38, 0.0], dtype=np.float32)
    params = SamplingParams(temperature=MIN_TEMPERATURE, repetition_penalty=PENALTY_RANGE[0])
    assert {choose(huge, params, np.random.default_rng(s), previous=[1, 3]) for s in range(20)} == {0}


def test_logit_bias_moves_the_choice():
    rng = np.random.default_rng(0)
    assert choose(LOGITS, SamplingParams(logit_bias=((4, -100.0),)), rng) == 0
    assert choose(LOGITS, SamplingParams(logit_bias=((3, 100.0),)), rng) == 3
    assert set(draws(SamplingParams(temperature=1.0, logit_bias=((4, -100.0), (0, -100.0))))) == {1, 2, 3}


def test_token_logprobs_are_the_log_softmax():
    probs = np.exp(LOGITS.astype(np.float64)) / np.exp(LOGITS.astype(np.float64)).sum()
    entry = token_logprobs(LOGITS, 1, top=3)
    assert entry.token == 1
    np.testing.assert_allclose(entry.logprob, np.log(probs[1]))
    assert [t for t, _ in entry.top] == [4, 0, 1]
    np.testing.assert_allclose([lp for _, lp in entry.top], np.log(probs[[4, 0, 1]]))

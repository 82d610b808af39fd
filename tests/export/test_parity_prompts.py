"""The export's random parity prompts use ordinary tokens wherever a tokenizer puts its special
tokens: at ids 0..2 (SmolLM2 / Llama style) or at the top of the vocabulary (Qwen)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.export import pipeline, validate
from tests.models import tokenizer_dir

QUESTION = ({"role": "user", "content": "Who directed Alien?"},)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tokenizer(request, tmp_path_factory):
    return ChatTokenizer(tokenizer_dir(tmp_path_factory.mktemp(request.param), request.param))


def evaluation(n: int = 3) -> SimpleNamespace:
    """What parity_prompts reads of an Evaluation: prompt sets with messages."""
    return SimpleNamespace(sets={"forget": [SimpleNamespace(messages=QUESTION)] * n})


def test_random_prompts_avoid_special_tokens_wherever_they_sit(tokenizer):
    specials = set(tokenizer.tokenizer.get_added_tokens_decoder())
    vocab = tokenizer.vocab_size
    prompts = pipeline.parity_prompts(tokenizer, evaluation())
    random_part, real = prompts[: pipeline.PARITY_PROMPTS], prompts[pipeline.PARITY_PROMPTS :]
    drawn = {t for p in random_part for t in p}
    assert len(random_part) == pipeline.PARITY_PROMPTS and all(random_part)
    assert not drawn & specials
    assert all(0 <= t < vocab for t in drawn)
    ordinary = sorted(set(range(vocab)) - specials)  # either side of the specials, whole range used
    assert min(drawn) < ordinary[0] + 40 and max(drawn) > ordinary[-1] - 40
    assert real == [tokenizer.encode_chat(list(QUESTION))] * 3
    assert {tokenizer.end_of_turn_id} <= {t for p in real for t in p}  # real prompts keep their specials


def test_layouts_put_specials_where_real_checkpoints_do(tokenizer):
    specials = sorted(tokenizer.tokenizer.get_added_tokens_decoder())
    if tokenizer.tokenizer.token_to_id("<|im_start|>") == 1:  # SmolLM2 / Llama style
        assert specials == [0, 1, 2] and tokenizer.end_of_turn_id == 2
    else:  # Qwen style
        assert specials[0] > 4000 and specials[-1] == tokenizer.vocab_size - 1


def test_random_prompts_are_seeded(tokenizer):
    same = pipeline.parity_prompts(tokenizer, evaluation(), seed=3)
    assert same == pipeline.parity_prompts(tokenizer, evaluation(), seed=3)
    assert same != pipeline.parity_prompts(tokenizer, evaluation(), seed=4)


def test_qwen_layout_keeps_the_prompts_of_the_old_id_range():
    """Qwen's ordinary ids are 0..first special - 1: the parity prompts (and the README's measured
    numbers) are those the old `randrange(0, first special)` drew."""
    rng = random.Random(0)
    old = [[rng.randrange(0, 4074) for _ in range(rng.randint(4, 48))] for _ in range(5)]
    assert validate.sample_prompts(5, range(4074), 0) == old


def test_no_ordinary_token_is_a_clear_error():
    with pytest.raises(ValueError, match="no token ids"):
        validate.sample_prompts(2, [], 0)

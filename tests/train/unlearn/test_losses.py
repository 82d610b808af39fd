"""The loss terms read logits only from the first reply position on (`windowed`): the same values
and gradients as over the whole chat, with the LM head and the vocabulary softmax skipped on the
shared prompt prefix."""

from __future__ import annotations

import pytest
import torch

from orin_unlearn.train.chat_data import IGNORE, collate
from orin_unlearn.train.unlearn.losses import LOSSES, LossContext, Step, model_inputs, reply_window, windowed
from orin_unlearn.train.unlearn.probe import with_positions
from tests.models import tiny_qwen2

VOCAB = 50


def chats(prompt_lengths: list[int], reply: int = 4, seed: int = 0) -> dict:
    """Chats of random tokens with prompts of the given lengths (unscored) and `reply` scored tokens."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in prompt_lengths:
        ids = torch.randint(3, VOCAB, (n + reply,), generator=g).tolist()
        rows.append((ids, [IGNORE] * n + ids[n:]))
    return with_positions(collate(rows, 0))


def test_the_window_starts_before_the_earliest_reply_token():
    batch = chats([6, 9, 7])
    assert reply_window(batch) == 5  # logits at 5 predict the first reply token (position 6)
    inputs, start = windowed(batch, "cpu")
    assert start == 5 and inputs["logits_to_keep"] == batch["input_ids"].shape[1] - 5
    assert torch.equal(inputs["labels"], batch["labels"][:, 5:])
    assert reply_window({"labels": torch.full((2, 4), IGNORE)}) == 0  # nothing labelled: every position


def full_length(ctx: LossContext, step: Step, name: str) -> torch.Tensor:
    """The term computed the way it was before the window: logits at every position."""
    if name == "forget_ce":
        return ctx.model(**model_inputs(step.forget, "cpu")).loss
    inputs = model_inputs(step.retain, "cpu", labels=False)
    with torch.no_grad():
        ref = torch.log_softmax(ctx.reference(inputs).float(), dim=-1)
    cur = torch.log_softmax(ctx.model(**inputs).logits.float(), dim=-1)
    mask = step.retain["answer_pos"].float()
    return ((ref.exp() * (ref - cur)).sum(-1) * mask).sum() / mask.sum()


@pytest.mark.parametrize("name", ["forget_ce", "retain_kl"])
def test_windowed_terms_equal_the_full_length_ones(name):
    model = tiny_qwen2(VOCAB)
    frozen = tiny_qwen2(VOCAB, seed=1)  # a reference that differs, so the KL is not zero
    ctx = LossContext(model, lambda x: frozen(**x).logits, kl_positions="reply")
    step = Step(forget=chats([6, 9, 7]), retain=chats([8, 5, 11], seed=1))
    windowed_value = LOSSES[name](ctx, step)
    grad = torch.autograd.grad(windowed_value, model.model.layers[0].mlp.down_proj.weight)[0]
    reference = full_length(ctx, Step(forget=step.forget, retain=step.retain), name)
    expected = torch.autograd.grad(reference, model.model.layers[0].mlp.down_proj.weight)[0]
    assert windowed_value.item() > 0
    assert windowed_value.item() == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["retain_kl", "forget_npo"])
def test_a_cached_reference_gives_the_same_terms_running_each_chat_once(name):
    from orin_unlearn.train.unlearn.train_loop import RowCache

    model, frozen = tiny_qwen2(VOCAB), tiny_qwen2(VOCAB, seed=1)
    pool = chats([8, 5, 11, 6, 9], seed=2)  # five chats; batches draw them in different company
    rows = [[0, 1, 2], [3, 1, 0], [4, 2]]
    plain = LossContext(model, lambda x: frozen(**x).logits, kl_positions="reply")
    cached = RowCache(plain.reference)
    ctx = LossContext(model, cached, kl_positions="reply")
    for picked in rows:
        width = int(pool["attention_mask"][picked].sum(1).max())
        batch = {k: v[picked][:, :width] for k, v in pool.items() if torch.is_tensor(v) and v.dim() == 2}
        step = Step(forget=batch, retain=batch, truth=batch)
        got, expected = LOSSES[name](ctx, step), LOSSES[name](plain, step)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)
        assert expected.item() != 0.0
    assert cached.computed == 5  # each chat once, whatever batch asked again

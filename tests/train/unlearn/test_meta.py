"""Meta-unlearning against a relearning adversary (train/unlearn/meta.py): the base comes back
bit-identical, the meta term changes the adapter's gradient, the mask holds, the sign mask."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from orin_unlearn.edge.config import load_config
from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.edge.progress import progress_bar
from orin_unlearn.train.chat_data import IGNORE, collate
from orin_unlearn.train.unlearn import masked_lora, meta, model_access, recipe, train_loop
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.losses import LOSSES, LossContext, Step
from orin_unlearn.train.unlearn.methods import masked_lora as masked_lora_method
from orin_unlearn.train.unlearn.probe import with_positions

VOCAB = 64
D_FF = 48
MASK = {0: torch.tensor([40, 3, 17, 9, 28]), 1: torch.tensor([5, 44, 30, 11, 2, 19, 36, 23])}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: more threads only contend on a shared 2-core machine (40x slower there)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_lora(tie: bool = False):
    """A random 2-layer Llama with a masked LoRA whose lora_B is not zero (so lora_A has a gradient)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=D_FF,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=tie,
    )
    model = LlamaForCausalLM(config)
    model.requires_grad_(False)
    peft_model = masked_lora.add_lora(model, MASK, rank=4, alpha=8.0)
    with torch.no_grad():
        for layer in MASK:
            model_access.down_proj(peft_model, layer).lora_B[masked_lora.ADAPTER].weight.normal_(0, 0.1)
    return peft_model.train()


def rows(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """`n` (ids, labels) chats of random tokens: a 6-token prompt (unscored) and a 4-token reply."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, VOCAB, (10,), generator=g).tolist()
        out.append((ids, [IGNORE] * 6 + ids[6:]))
    return out


def setting(**overrides):
    """(config, context, batch, adversary) for the tiny LoRA model, with the meta term on every step."""
    model = tiny_lora()
    cfg = UnlearnConfig(meta_every=1, meta_steps=3, meta_lr=1e-2, forget_batch=4, **overrides)

    def reference(inputs):
        with model.disable_adapter():
            return model(**inputs).logits

    ctx = LossContext(model, reference)
    batch = Step(forget=with_positions(collate(rows(4, 1), 0)), retain=with_positions(collate(rows(4, 2), 0)))
    return cfg, ctx, batch, meta.Adversary(cfg, rows(8, 3), pad_id=0, rng=random.Random(0))


def plain_backward(ctx: LossContext, batch: Step) -> list[torch.Tensor]:
    """The step's own gradient (forget CE + retain KL) into .grad; returns a copy of it."""
    step = Step(forget=batch.forget, retain=batch.retain)
    (LOSSES["forget_ce"](ctx, step) + LOSSES["retain_kl"](ctx, step)).backward()
    return [p.grad.clone() for p in adapter(ctx.model)]


def adapter(model) -> list[torch.nn.Parameter]:
    return [p for n, p in model.named_parameters() if "lora_" in n]


def base_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def test_attacked_parameters_are_every_decoder_weight_but_not_embeddings_or_adapter():
    for tie in (False, True):
        model = tiny_lora(tie)
        names = {id(p): n for n, p in model.named_parameters()}
        got = {names[id(p)] for p in meta.attacked_parameters(model)}
        assert not any("lora_" in n or "embed_tokens" in n or "lm_head" in n for n in got)
        per_layer = [n for n in got if ".layers.0." in n]
        for part in (
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
            "layernorm",
        ):
            assert any(part in n for n in per_layer), part
        layers = {n for n, _ in model.named_parameters() if ".layers." in n and "lora_" not in n}
        assert layers <= got and got - layers == {"base_model.model.model.norm.weight"}


def test_meta_step_restores_the_base_bit_identically():
    cfg, ctx, batch, adversary = setting()
    before = base_state(ctx.model)
    plain_backward(ctx, batch)
    with torch.no_grad():
        plain_ce = LOSSES["forget_ce"](ctx, Step(forget=batch.forget, retain=None)).item()
    record = adversary.step(0, ctx.model, ctx, batch)
    # the attack did move the base: the forget CE at the attacked weights is another number
    assert abs(record["meta_forget_ce"] - plain_ce) > 1e-4
    assert record["meta_s"] > 0 and record["meta_relearn_ce"] > 0
    for name, p in ctx.model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad and p.grad is not None
        else:
            assert torch.equal(p, before[name]), name  # bit-identical
            assert not p.requires_grad and p.grad is None, name


def test_base_is_restored_when_the_block_fails():
    model = tiny_lora()
    params = meta.attacked_parameters(model)
    before = base_state(model)
    with pytest.raises(RuntimeError), meta.saved(params):
        for p in params:
            p.requires_grad_(True)
            p.data.add_(1.0)
            p.grad = torch.ones_like(p)
        raise RuntimeError("attack failed")
    for name, p in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, before[name]) and not p.requires_grad and p.grad is None


def test_meta_term_adds_its_weighted_gradient_to_the_step_gradient():
    totals = {}
    for weight in (0.0, 1.0, 2.0):
        cfg, ctx, batch, adversary = setting(meta_weight=weight)
        plain = plain_backward(ctx, batch)
        adversary.step(0, ctx.model, ctx, batch)
        totals[weight] = [p.grad.clone() for p in adapter(ctx.model)]
    for p0, g0, g1, g2 in zip(plain, totals[0.0], totals[1.0], totals[2.0], strict=True):
        assert torch.equal(g0, p0)  # weight 0: the step's own gradient
        torch.testing.assert_close(g2 - p0, 2 * (g1 - p0), atol=1e-6, rtol=1e-4)  # linear in the weight
    assert any(not torch.allclose(g1, p0) for p0, g1 in zip(plain, totals[1.0], strict=True))


def test_off_meta_steps_change_nothing():
    cfg, ctx, batch, _ = setting()
    adversary = meta.Adversary(dataclasses.replace(cfg, meta_every=3), rows(8, 3), pad_id=0)
    assert [adversary.due(s) for s in range(6)] == [False, False, True, False, False, True]
    off = meta.Adversary(UnlearnConfig(), [], pad_id=0)
    plain = plain_backward(ctx, batch)
    assert adversary.step(0, ctx.model, ctx, batch) == {} and off.step(0, ctx.model, ctx, batch) == {}
    assert all(torch.equal(p.grad, g) for p, g in zip(adapter(ctx.model), plain, strict=True))


@pytest.mark.parametrize("sign_mask", [False, True])
def test_masked_columns_of_lora_a_stay_zero(sign_mask):
    cfg, ctx, batch, adversary = setting(meta_sign_mask=sign_mask)
    model = ctx.model
    params = adapter(model)
    lora_a = {
        layer: model_access.down_proj(model, layer).lora_A[masked_lora.ADAPTER].weight for layer in MASK
    }
    start = {layer: w.detach().clone() for layer, w in lora_a.items()}
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    for step in range(3):
        plain_backward(ctx, batch)
        assert adversary.step(step, model, ctx, batch)
        for layer, w in lora_a.items():
            outside = masked_lora.column_mask(MASK[layer], D_FF) == 0
            assert torch.count_nonzero(w.grad[:, outside]) == 0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert masked_lora.outside_mask_max(model, MASK) == 0.0
    assert all(not torch.equal(w, start[layer]) for layer, w in lora_a.items())  # the mask's columns trained


def test_sign_mask_zeroes_where_the_signs_disagree():
    total = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    forget = torch.tensor([0.5, -0.5, 0.5, 0.0, 0.0, -2.0])
    retain = torch.tensor([0.1, 0.1, -0.1, 0.0, 0.3, -0.1])
    assert meta.sign_mask(total, forget, retain).tolist() == [1.0, 0.0, 0.0, 4.0, 0.0, 6.0]


def test_sign_mask_keeps_or_zeroes_each_entry_of_the_meta_gradient():
    grads = {}
    for on in (False, True):
        cfg, ctx, batch, adversary = setting(meta_sign_mask=on)
        plain_backward(ctx, batch)
        adversary.step(0, ctx.model, ctx, batch)
        grads[on] = torch.cat([p.grad.flatten() for p in adapter(ctx.model)])
    unmasked, masked = grads[False], grads[True]
    kept = masked != 0
    assert torch.equal(masked[kept], unmasked[kept])  # an entry is either the full gradient or 0
    dropped = (~kept) & (unmasked != 0)
    assert dropped.sum() > 0 and kept.sum() > 0  # the signs disagree somewhere and agree somewhere


def test_recipe_trains_with_the_meta_term_on_the_tiny_base(tmp_path):
    cfg = UnlearnConfig(
        steps=4,
        meta_every=2,
        meta_sign_mask=True,
        forget_batch=4,
        retain_batch=4,
        retain_examples=16,
        device="cpu",
        rank=4,
    )
    s = recipe.setup(cfg, tmp_path)
    before = model_access.weight_digests(s.model)
    mask = {1: torch.arange(0, 64, 3), 2: torch.arange(5, 40)}
    model, reference = masked_lora_method.wrap(s, mask)
    with progress_bar(disable=True) as progress:
        history = train_loop.train(s, model, reference, {}, progress)
    assert [("meta_forget_ce" in h) for h in history] == [False, True, False, True]
    assert all(h["meta_s"] > 0 for h in history[1::2])
    assert model_access.weight_digests(model) == before
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    assert masked_lora.outside_mask_max(model, mask) == 0.0


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["meta_every=-1"], "meta_every"),
        (["meta_every=2", "method=full"], "meta_every"),
        (["meta_every=2", "method=lunar"], "meta_every"),
        (["meta_steps=0"], "meta_steps"),
        (["meta_lr=0"], "meta_lr"),
        (["meta_weight=-0.5"], "meta_weight"),
        (["meta_sign_mask=true"], "meta_sign_mask"),
        (["meta_sign_mask=true", "meta_every=2", "retain_batch=0"], "meta_sign_mask"),
    ],
)
def test_bad_meta_settings_name_the_key(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_config(UnlearnConfig, None, overrides)


def test_good_meta_settings_load():
    cfg = load_config(
        UnlearnConfig,
        None,
        ["meta_every=5", "meta_steps=2", "meta_lr=0.0001", "meta_weight=0", "meta_sign_mask=true"],
    )
    assert (cfg.meta_every, cfg.meta_steps, cfg.meta_lr, cfg.meta_weight, cfg.meta_sign_mask) == (
        5,
        2,
        1e-4,
        0.0,
        True,
    )
    for method in ("masked_lora", "lora"):
        assert load_config(UnlearnConfig, None, [f"method={method}", "meta_every=1"]).meta_every == 1
    assert UnlearnConfig().meta_every == 0  # off by default

"""Null-space protection: after projection the update leaves every protected key's output
unchanged (ΔW·K0 ≈ 0), while a key outside their span still moves; on a PEFT LoRA the projection
keeps the mask and the protected prompts' logits."""

from __future__ import annotations

import torch

from orin_unlearn.train.unlearn import masked_lora, nullspace
from orin_unlearn.train.unlearn.model_access import down_proj


def test_the_projected_update_is_zero_on_protected_keys_and_not_on_the_concept():
    torch.manual_seed(0)
    d_ff, rank = 48, 4
    keys = torch.randn(d_ff, 30) @ torch.randn(30, 200)  # 200 protected keys spanning 30 dims
    proj = nullspace.projectors_for({0: keys @ keys.T}, None, threshold=1e-6)[0]
    assert proj.rank == d_ff - 30
    a, b = torch.randn(rank, d_ff), torch.randn(16, rank)
    delta = b @ (a @ proj.matrix)  # ΔW = B·A·P
    assert (delta @ keys).abs().max() < 1e-3 * (b @ a @ keys).abs().max()
    concept = torch.randn(d_ff)  # a key with a part outside the protected span
    share = float(concept @ proj.matrix @ concept / (concept @ concept))
    assert 0.2 < share < 0.6  # about 18 of 48 random directions
    moved = (delta @ concept).norm()
    assert moved > 0.1 * (b @ a @ concept).norm()
    energy = nullspace.concept_share({0: torch.outer(concept, concept)}, {0: proj})[0]
    assert abs(energy - share) < 1e-5


def test_the_null_space_holds_at_most_the_threshold_of_the_protected_energy():
    moment = torch.diag(torch.tensor([100.0, 10.0, 0.5, 0.001]))  # trace 110.501
    assert torch.allclose(
        nullspace.null_projector(moment, 1e-2), torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0]))
    )
    assert torch.allclose(
        nullspace.null_projector(moment, 1e-4), torch.diag(torch.tensor([0.0, 0.0, 0.0, 1.0]))
    )
    assert nullspace.null_projector(moment, 1e-6).abs().max() == 0  # no room at all


def test_projecting_a_masked_lora_keeps_the_mask_and_the_protected_outputs(base_dir):
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model

    torch.manual_seed(0)
    model, tok = load_model(base_dir), ChatTokenizer(base_dir)
    d_ff = down_proj(model, 1).in_features
    mask = {1: torch.arange(0, d_ff, 3)}
    peft = masked_lora.add_lora(model, mask, rank=4, alpha=8)
    layer = down_proj(peft, 1)
    with torch.no_grad():  # a random update, as if trained
        layer.lora_A["default"].weight.mul_(0).add_(torch.randn_like(layer.lora_A["default"].weight))
        layer.lora_A["default"].weight.mul_(masked_lora.column_mask(mask[1], d_ff))
        layer.lora_B["default"].weight.normal_()
    protected = [([{"role": "user", "content": q}], a) for q, a in (("Who directed Heat?", "Michael Mann."),)]
    keys = nullspace.collect_keys(peft, tok, protected, [1])
    with peft.disable_adapter():
        before = peft(**tok_batch(tok, protected)).logits
    moved = (peft(**tok_batch(tok, protected)).logits - before).abs().max()
    nullspace.project(peft, nullspace.projectors_for(keys, mask, threshold=1e-6))
    assert masked_lora.outside_mask_max(peft, mask) == 0.0
    after = (peft(**tok_batch(tok, protected)).logits - before).abs().max()
    assert moved > 1e-2 and after < 1e-3 * moved


def tok_batch(tok, examples):
    from orin_unlearn.train.chat_data import collate, encode_example

    batch = collate([encode_example(tok, m, r) for m, r in examples], tok.pad_token_id)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def test_keys_are_those_of_a_whole_forward_pass_though_the_layers_above_never_run(base_dir):
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model
    from orin_unlearn.train.unlearn import probe

    model, tok = load_model(base_dir), ChatTokenizer(base_dir)
    protected = [([{"role": "user", "content": "Who directed Heat?"}], "Michael Mann.")]
    ran = []
    last = len(probe.decoder_layers(model)) - 1
    hook = down_proj(model, last).register_forward_pre_hook(lambda *_: ran.append(True))
    try:
        keys = nullspace.collect_keys(model, tok, protected, [0, 1])
    finally:
        hook.remove()
    assert not ran  # the pass stopped at layer 1
    with torch.no_grad(), probe.capture_mlp_inputs(model) as captured:
        batch = tok_batch(tok, protected)
        model(**batch)
        for layer in (0, 1):
            k = captured[layer].float()[batch["attention_mask"].bool()]
            torch.testing.assert_close(keys[layer], k.T @ k)

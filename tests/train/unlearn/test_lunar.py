"""LUNAR on known activations, on a random in-process 3-layer Qwen2 (capture mechanics) and on the
shipped tiny base: the direction, the layer choice, the config keys, and that the fitted update
moves forget activations along the direction, leaves retain ones (nearly) in place, never touches
a base weight, and reloads with vanilla PEFT."""

from __future__ import annotations

import dataclasses
import random
import re

import pytest
import torch

from orin_unlearn.benchmarks.world import build_prompts, load_catalogue, split_prompts, tiny_base_dir
from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.chat_data import collate, encode_example
from orin_unlearn.train.models import load_model
from orin_unlearn.train.unlearn import config, lunar, masked_lora
from orin_unlearn.train.unlearn.model_access import weight_digests
from orin_unlearn.train.unlearn.probe import with_positions
from tests.models import tiny_qwen2

LAYER, COEFF = 1, 1.0


def test_direction_is_reference_mean_minus_forget_mean():
    reference = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean [2, 3]
    forget = torch.tensor([[0.0, 0.0], [2.0, -2.0], [1.0, -1.0]])  # mean [1, -1]
    assert lunar.redirection(reference, forget).tolist() == [1.0, 4.0]
    assert lunar.redirection(torch.tensor([2.0, 3.0]), torch.tensor([1.0, -1.0])).tolist() == [1.0, 4.0]


def _scores(hot_layer: int) -> dict[str, torch.Tensor]:
    s = torch.full((4, 8), 0.1)
    s[hot_layer, :2] = 5.0
    return {"saliency": s, "fisher": s.clone(), "contrast": s.clone()}


def test_layer_choice():
    mask = {0: torch.tensor([0, 1]), 2: torch.tensor([0, 1])}
    assert lunar.choose_layer(-1, mask, _scores(2)) == 2  # the mask layer with the most score
    assert lunar.choose_layer(-1, mask, _scores(0)) == 0
    assert lunar.choose_layer(3, mask, _scores(2)) == 3  # explicit wins
    with pytest.raises(ConfigError, match=r"'lunar\.layer'"):
        lunar.choose_layer(4, mask, _scores(2))


@pytest.mark.parametrize(
    "override",
    [
        "lunar.layer=-2",
        "lunar.coefficient=0",
        "lunar.steps=-1",
        "lunar.lr=0",
        "lunar.retain_weight=-1",
        "lunar.positions=first",
        "lunar.positions=last:0",
    ],
)
def test_bad_lunar_values_name_the_key(override):
    with pytest.raises(ConfigError, match=f"config key '{re.escape(override.split('=')[0])}'"):
        config.load(None, ["method=lunar", override])


def test_lunar_is_a_method_and_masked_follows_its_flag():
    cfg = config.load(None, ["method=lunar"])
    assert cfg.masked
    assert not dataclasses.replace(cfg, lunar=dataclasses.replace(cfg.lunar, masked=False)).masked
    assert not dataclasses.replace(cfg, method="lora").masked


@pytest.fixture(scope="module")
def world():
    catalogue = load_catalogue()
    splits = split_prompts(build_prompts(catalogue), catalogue, "Inception")
    forget = [(p.messages, p.answer) for p in splits.get("forget", "train")[:32]]
    retain = [(p.messages, p.answer) for p in splits.get("retain", "train")[::397][:48]]
    reference = lunar.reference_prompts(catalogue, "I don't know that title.", 32, random.Random(0))
    return ChatTokenizer(tiny_base_dir()), forget, retain, reference


def tiny_model():
    """A random 3-layer Qwen2 that fits the shipped tokenizer (for the capture mechanics)."""
    return tiny_qwen2(4096, layers=3, max_positions=256)


def residual_rows(model, tokenizer, examples, positions: str, layer: int = LAYER) -> torch.Tensor:
    """hidden_states[layer + 1] (layer `layer`'s output for a non-final layer) at the last prompt
    token or at every token."""
    batch = with_positions(
        collate([encode_example(tokenizer, m, r) for m, r in examples], tokenizer.pad_token_id)
    )
    with torch.no_grad():
        hidden = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
        ).hidden_states[layer + 1]
    if positions == "last":
        return hidden[torch.arange(len(examples)), batch["last_prompt"]]
    return hidden[batch["attention_mask"].bool()]


@pytest.fixture(scope="module")
def fitted(world):
    """LUNAR's update fitted on the shipped tiny base (trained on the world, so forget and retain
    prompts are told apart), at layer 1, reading half of its MLP neurons."""
    tokenizer, forget, retain, reference = world
    model = load_model(tiny_base_dir())
    before = {
        "forget": residual_rows(model, tokenizer, forget, "last"),
        "retain": residual_rows(model, tokenizer, retain, "all"),
    }
    direction = lunar.redirection(
        lunar.last_residuals(model, tokenizer, reference, LAYER, 16),
        lunar.last_residuals(model, tokenizer, forget, LAYER, 16),
    )
    forget_x = lunar.cache_inputs(model, tokenizer, forget, LAYER, "last", 16)
    keep = [lunar.cache_inputs(model, tokenizer, retain, LAYER, pos, 16) for pos in ("last", "all")]
    digests = weight_digests(model)
    mask = {LAYER: torch.randperm(768, generator=torch.Generator().manual_seed(0))[:384]}
    peft_model = masked_lora.add_lora(model, mask, rank=8, alpha=16, masked=True)
    module = masked_lora.down_proj(peft_model, LAYER)
    history = lunar.fit(module, forget_x, keep, COEFF * direction, 300, 1e-2, 1.0)
    after = {
        "forget": residual_rows(peft_model, tokenizer, forget, "last"),
        "retain": residual_rows(peft_model, tokenizer, retain, "all"),
    }
    return peft_model, mask, direction, before, after, history, digests


def test_cache_has_one_row_per_prompt_tail_token_or_token(world):
    tokenizer, forget, retain, _ = world
    model = tiny_model()
    last = lunar.cache_inputs(model, tokenizer, forget, 0, "last", 5)
    assert last.shape == (len(forget), 64)
    tail = lunar.cache_inputs(model, tokenizer, forget, 0, "last:3", 5)
    assert tail.shape == (3 * len(forget), 64)
    assert torch.equal(tail[::3], last)  # the first of each example's three rows is its last token
    n_tokens = sum(len(encode_example(tokenizer, m, r)[0]) for m, r in retain)
    assert lunar.cache_inputs(model, tokenizer, retain, 0, "all", 5).shape == (n_tokens, 64)
    n_reply = sum(sum(label != -100 for label in encode_example(tokenizer, m, r)[1]) for m, r in retain)
    assert lunar.cache_inputs(model, tokenizer, retain, 0, "answer", 5).shape == (n_reply, 64)
    with pytest.raises(ValueError, match="last:k"):
        lunar.cache_inputs(model, tokenizer, forget, 0, "last:0", 5)


def test_last_residuals_are_layer_outputs_before_the_final_norm(world):
    tokenizer, forget, _, _ = world
    model = tiny_model()
    hidden = residual_rows(model, tokenizer, forget, "last")  # hidden_states[LAYER + 1]
    assert torch.allclose(lunar.last_residuals(model, tokenizer, forget, LAYER, 7), hidden, atol=1e-5)
    last = lunar.last_residuals(model, tokenizer, forget, 2, 7)  # the final layer
    batch = with_positions(
        collate([encode_example(tokenizer, m, r) for m, r in forget], tokenizer.pad_token_id)
    )
    with torch.no_grad():
        normed = model(**{k: batch[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
    at_last = normed.hidden_states[3][torch.arange(len(forget)), batch["last_prompt"]]
    assert torch.allclose(model.model.norm(last), at_last, atol=1e-5)  # hidden_states[-1] is normed


def test_forget_moves_along_the_direction(fitted):
    _, _, direction, before, after, history, _ = fitted
    assert history[-1]["forget_mse"] < 0.1 * history[0]["forget_mse"]
    moved = after["forget"] - before["forget"]
    cos = torch.cosine_similarity(moved, direction.unsqueeze(0), dim=-1)
    assert cos.min() > 0.9
    ratio = moved.norm(dim=-1) / (COEFF * direction.norm())
    assert 0.8 < float(ratio.mean()) < 1.2


def test_retain_stays_nearly_put(fitted):
    _, _, direction, before, after, _, _ = fitted
    drift = (after["retain"] - before["retain"]).norm(dim=-1)
    assert float(drift.mean()) < 0.05 * COEFF * float(direction.norm())  # forget moved ~20x as far


def test_base_untouched_and_mask_held(fitted):
    peft_model, mask, *_, digests = fitted
    assert weight_digests(peft_model) == digests
    assert masked_lora.outside_mask_max(peft_model, mask) == 0.0


def test_adapter_reloads_with_vanilla_peft(fitted, world, tmp_path):
    from peft import PeftModel

    peft_model, *_ = fitted
    tokenizer, forget, _, _ = world
    peft_model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(load_model(tiny_base_dir()), str(tmp_path)).eval()
    assert torch.allclose(
        residual_rows(reloaded, tokenizer, forget, "last"),
        residual_rows(peft_model, tokenizer, forget, "last"),
        atol=1e-4,
    )

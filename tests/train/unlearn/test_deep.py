"""Deep forgetting: the cancellation init of the masked LoRA, and prefill-augmented forget examples."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from orin_unlearn.edge.config import load_config
from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.chat_data import IGNORE, encode_example
from orin_unlearn.train.unlearn import deep, masked_lora
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.data import build_data
from orin_unlearn.train.unlearn.methods import masked_lora as masked_lora_method
from tests.models import tokenizer_dir

D_FF = 48
# layer -> masked neurons (unsorted, as the mask stores them by score)
MASK = {0: torch.tensor([40, 3, 17, 9, 28]), 1: torch.tensor([5, 44, 30, 11, 2, 19, 36, 23, 8, 41])}
EVAL_PREFILLS = ("Sure! Here is what I know:", "Sure, here is the answer:")


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=D_FF,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    return LlamaForCausalLM(config).eval()


def cancelled(rank: int, strength: float, alpha: float = 16.0):
    """(base down_proj weights per layer, the LoRA model after the cancel init)."""
    model = tiny_llama()
    base = {layer: model.model.layers[layer].mlp.down_proj.weight.detach().clone() for layer in MASK}
    peft_model = masked_lora.add_lora(model, MASK, rank, alpha)
    deep.cancel_init(peft_model, MASK, strength)
    return base, peft_model


def merged_down_proj(peft_model) -> dict[int, torch.Tensor]:
    merged = copy.deepcopy(peft_model).merge_and_unload()
    return {layer: merged.model.layers[layer].mlp.down_proj.weight.detach() for layer in MASK}


def outside(idx: torch.Tensor) -> torch.Tensor:
    return masked_lora.column_mask(idx, D_FF) == 0


def test_cancel_with_enough_rank_zeroes_the_masked_columns_only():
    base, peft_model = cancelled(rank=16, strength=1.0)  # rank >= 5 and >= 10 masked neurons
    for layer, weight in merged_down_proj(peft_model).items():
        idx = MASK[layer]
        assert base[layer][:, idx].abs().min() > 0  # there was something to cancel
        torch.testing.assert_close(weight[:, idx], torch.zeros_like(weight[:, idx]), atol=1e-6, rtol=0)
        assert torch.equal(weight[:, outside(idx)], base[layer][:, outside(idx)])


def test_cancel_with_too_few_ranks_leaves_the_svd_tail():
    rank = 4
    base, peft_model = cancelled(rank=rank, strength=1.0, alpha=8.0)
    for layer, weight in merged_down_proj(peft_model).items():
        idx = MASK[layer]
        singular = torch.linalg.svdvals(base[layer][:, idx].double())
        tail = singular[rank:].square().sum().sqrt()
        residual = torch.linalg.matrix_norm(weight[:, idx].double())
        assert tail > 0.1 * singular[0]  # the approximation really drops something
        torch.testing.assert_close(residual, tail, rtol=1e-4, atol=1e-6)
        assert torch.equal(weight[:, outside(idx)], base[layer][:, outside(idx)])


def test_half_strength_halves_the_masked_columns():
    base, peft_model = cancelled(rank=16, strength=0.5)
    for layer, weight in merged_down_proj(peft_model).items():
        idx = MASK[layer]
        torch.testing.assert_close(weight[:, idx], 0.5 * base[layer][:, idx], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("rank", [3, 16])
def test_cancel_keeps_lora_a_inside_the_mask_and_trainable(rank):
    _, peft_model = cancelled(rank=rank, strength=1.0)
    assert masked_lora.outside_mask_max(peft_model, MASK) == 0.0
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    before = [p.detach().clone() for p in params]
    ids = torch.randint(0, 64, (2, 8))
    peft_model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    assert masked_lora.outside_mask_max(peft_model, MASK) == 0.0
    assert all(not torch.equal(a, p) for a, p in zip(before, params, strict=True))


def test_masked_lora_wrap_applies_the_configured_init():
    for lora_init, changed in (("zero", False), ("cancel", True)):
        model = tiny_llama()
        base = model.model.layers[1].mlp.down_proj.weight.detach().clone()
        cfg = UnlearnConfig(lora_init=lora_init, rank=16)
        peft_model, _ = masked_lora_method.wrap(SimpleNamespace(cfg=cfg, model=model), MASK)
        weight = merged_down_proj(peft_model)[1]
        assert torch.equal(weight, base) is not changed
        assert masked_lora.outside_mask_max(peft_model, MASK) == 0.0


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["lora_init=random"], "lora_init"),
        (["lora_init=cancel", "method=lora"], "lora_init"),
        (["lora_init=cancel", "method=full"], "lora_init"),
        (["cancel_strength=0"], "cancel_strength"),
        (["cancel_strength=1.5"], "cancel_strength"),
        (["prefill_augment=-1"], "prefill_augment"),
        (["prefill_augment=2", "method=lunar"], "prefill_augment"),
    ],
)
def test_bad_deep_settings_name_the_key(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_config(UnlearnConfig, None, overrides)


def test_good_deep_settings_load():
    cfg = load_config(UnlearnConfig, None, ["lora_init=cancel", "cancel_strength=0.5", "prefill_augment=3"])
    assert (cfg.lora_init, cfg.cancel_strength, cfg.prefill_augment) == ("cancel", 0.5, 3)


# prefill augmentation


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tmp_path_factory.mktemp("run")  # its world stage is written by the first build_data


@pytest.fixture(scope="module")
def data(run):
    return {n: build_data(UnlearnConfig(prefill_augment=n), run) for n in (0, 2, 6)}


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tokenizer(request, tmp_path_factory):
    return ChatTokenizer(tokenizer_dir(tmp_path_factory.mktemp(request.param), request.param))


def test_openings_are_not_the_evaluation_attacks():
    assert not set(EVAL_PREFILLS) & set(deep.OPENINGS)
    assert not any(o.lower().startswith("sure") for o in deep.OPENINGS)


def test_answer_opening_stops_before_the_first_fact():
    assert deep.answer_opening("Inception was directed by Christopher Nolan.", ("Christopher Nolan",)) == (
        "Inception was directed by"
    )
    plot = "Inception is a science fiction and action film about dreams, heist and subconscious."
    assert (
        deep.answer_opening(plot, ("heist", "dreams"))
        == "Inception is a science fiction and action film about"
    )
    assert deep.answer_opening("You might enjoy Tenet (2020).", ()) == ""


def test_prefilled_prompt_is_the_runtime_prefilled_input_and_only_the_target_is_scored(data, tokenizer):
    prefill = data[6].forget_prefill
    director = [(m, o, t) for m, o, t in prefill if o == "Inception was directed by"]
    assert director, "the reference answer's opening is one of the openings"
    for messages, opening, target in director[:3] + prefill[:5]:
        reply = deep.continuation(opening, target)
        ids, labels = encode_example(tokenizer, messages, reply, prefix=opening)
        n = labels.count(IGNORE)
        assert labels[:n] == [IGNORE] * n
        assert ids[:n] == tokenizer.encode_prompts([list(messages)], [opening])[0]
        assert tokenizer.decode(ids[:n]).endswith(opening)
        assert labels[n:] == ids[n:] == tokenizer.encode(reply) + [tokenizer.end_of_turn_id]
        assert tokenizer.decode(ids[n:-1]).strip() == target


def test_prefilled_examples_join_their_target_group(data, tokenizer):
    cfg = UnlearnConfig()
    d = data[2]
    assert len(d.forget_prefill) == 2 * len(d.forget_target)
    refusal, substitute = deep.forget_groups(tokenizer, d, cfg.refusal)
    plain_refusal, plain_substitute = deep.forget_groups(tokenizer, data[0], cfg.refusal)
    n_substitute = sum(t != cfg.refusal for _, _, t in d.forget_prefill)
    assert 0 < n_substitute < len(d.forget_prefill)
    assert len(substitute) == len(plain_substitute) + n_substitute
    assert refusal[: len(plain_refusal)] == plain_refusal
    assert substitute[: len(plain_substitute)] == plain_substitute
    # a substitute after its own opening continues it instead of repeating it
    rec = [(o, t) for _, o, t in data[6].forget_prefill if t != cfg.refusal and t.startswith(o)]
    assert rec and all(not deep.continuation(o, t).strip().startswith(o) for o, t in rec)


def test_prefill_draws_follow_the_seed_and_leave_other_data_alone(data, run):
    plain, augmented = data[0], data[2]
    assert plain.forget_prefill == []
    for key in ("forget_reference", "forget_target", "neighbour", "retain", "eval_sets"):
        assert getattr(plain, key) == getattr(augmented, key)
    again = build_data(UnlearnConfig(prefill_augment=2), run).forget_prefill
    other = build_data(UnlearnConfig(prefill_augment=2, seed=1), run).forget_prefill
    assert again == augmented.forget_prefill and other != augmented.forget_prefill
    for n, d in data.items():
        per_prompt: dict = {}
        for m, o, _ in d.forget_prefill:
            per_prompt.setdefault(repr(m), []).append(o)
        assert all(len(set(v)) == len(v) <= n for v in per_prompt.values())


def test_npo_lowers_the_true_answer_and_is_zero_when_off(base_dir):
    """forget_npo: log(2)*(2/beta) at the base itself, falling as the answer gets less likely; no
    truth batch (npo_weight 0) gives a zero term."""
    import math

    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.chat_data import collate, encode_example
    from orin_unlearn.train.models import load_model
    from orin_unlearn.train.unlearn.losses import LOSSES, LossContext, Step
    from orin_unlearn.train.unlearn.losses.forget_npo import NPO_BETA, answer_logprob

    model, tok = load_model(base_dir), ChatTokenizer(base_dir)
    rows = [
        encode_example(
            tok,
            [{"role": "user", "content": "Who directed Inception?"}],
            "Inception was directed by Christopher Nolan.",
        )
    ]
    truth = collate(rows, tok.pad_token_id)
    inputs = {k: truth[k] for k in ("input_ids", "attention_mask")}
    logits = model(**inputs).logits
    n_scored = int((truth["labels"][:, 1:] != -100).sum())
    assert n_scored == len(rows[0][1]) - rows[0][1].count(-100)
    same = LossContext(model, lambda x: model(**x).logits)
    at_base = LOSSES["forget_npo"](same, Step(forget={}, retain=None, truth=truth))
    assert at_base.item() == pytest.approx(2 / NPO_BETA * math.log(2), rel=1e-5)
    # a reference that found the answer likelier than the model does: the loss is already lower
    bump = 5.0 * torch.nn.functional.one_hot(truth["input_ids"].roll(-1, 1), logits.shape[-1])

    def likelier(x):  # the losses ask for the reply's logits only: the bump's last positions
        out = model(**x).logits
        return out + bump[:, -out.shape[1] :]

    shifted = LossContext(model, likelier)
    assert LOSSES["forget_npo"](shifted, Step(forget={}, retain=None, truth=truth)).item() < at_base.item()
    assert answer_logprob(logits, truth["labels"]).shape == (1,)
    assert LOSSES["forget_npo"](same, Step(forget={}, retain=None)).item() == 0.0


def test_truth_batches_are_off_by_default_and_seeded_apart(tmp_path):
    from orin_unlearn.benchmarks.world import tiny_base_dir
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.unlearn import deep
    from orin_unlearn.train.unlearn.config import UnlearnConfig
    from orin_unlearn.train.unlearn.data import build_data

    tok = ChatTokenizer(tiny_base_dir())
    cfg = UnlearnConfig(forget_batch=4, retain_examples=8)
    data = build_data(cfg, tmp_path)
    assert deep.TruthBatches(cfg, tok, data).draw(slice(None)) is None
    on = UnlearnConfig(forget_batch=4, retain_examples=8, npo_weight=1.0)
    a, b = (
        deep.TruthBatches(on, tok, data).draw(slice(None)),
        deep.TruthBatches(on, tok, data).draw(slice(None)),
    )
    assert a["input_ids"].shape[0] == 4 and torch.equal(a["input_ids"], b["input_ids"])
    with pytest.raises(ConfigError, match="npo_weight"):
        UnlearnConfig(method="lunar", npo_weight=1.0)


def test_undial_moves_only_the_answer_tokens():
    """forget_undial: the teacher is the base with only each answer token's logit lowered (every
    other token keeps its odds); the gradient reaches only the positions that predict an answer
    token, and there it pushes the answer token down."""
    from orin_unlearn.train.unlearn.losses.forget_undial import lowered_target, undial_loss

    torch.manual_seed(0)
    vocab, strength = 11, 10.0
    base = torch.randn(2, 6, vocab)
    ids = torch.randint(0, vocab, (2, 6))
    labels = ids.clone()
    labels[:, :3] = -100  # the prompt
    labels[1, 5] = -100  # padding
    teacher = lowered_target(base, labels, strength)
    plain = torch.log_softmax(base[:, :-1], dim=-1)
    for row in range(2):
        for t in range(5):
            label = int(labels[row, t + 1])
            if label == -100:
                assert torch.allclose(teacher[row, t], plain[row, t], atol=1e-6)
                continue
            assert teacher[row, t, label] < plain[row, t, label] - 1.0
            others = [v for v in range(vocab) if v != label]
            odds = teacher[row, t, others] - plain[row, t, others]  # one shift for all the others
            assert torch.allclose(odds, odds[0].expand_as(odds), atol=1e-5)
    student = base.clone().requires_grad_(True)
    undial_loss(student, base, labels, strength).backward()
    grad = student.grad[:, :-1]
    scored = labels[:, 1:] != -100
    assert grad[~scored].abs().max() == 0.0 and grad[scored].abs().amax(-1).min() > 0
    answer = labels[:, 1:].clamp_min(0).unsqueeze(-1)
    assert (grad.gather(-1, answer).squeeze(-1)[scored] > 0).all()  # descent lowers the answer token
    assert undial_loss(student, base, torch.full_like(labels, -100), strength).item() == 0.0

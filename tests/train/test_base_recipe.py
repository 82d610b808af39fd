"""The base-model recipe runs end to end (a few steps) and is deterministic for a seed."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from orin_unlearn.train.base_recipe import BaseConfig, build_base, lr_at

SMOKE = dict(steps=3, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1, vocab_size=600,
             batch_size=8, warmup_steps=1)  # fmt: skip


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    dirs = [tmp_path_factory.mktemp(f"run{i}") for i in range(2)]
    for d in dirs:
        build_base(d, BaseConfig(**SMOKE), measure=False)
    return dirs


def test_checkpoint_is_a_loadable_qwen2(smoke_runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smoke_runs[0])
    assert type(model).__name__ == "Qwen2ForCausalLM"
    tok = AutoTokenizer.from_pretrained(smoke_runs[0])
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Who directed Memento?"}], add_generation_prompt=True
    )
    out = model.generate(torch.tensor([ids]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] == len(ids) + 3 or tok.eos_token_id in out[0].tolist()


def test_same_seed_same_weights(smoke_runs):
    a, b = (load_file(d / "model.safetensors") for d in smoke_runs)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (smoke_runs[0] / "tokenizer.json").read_bytes() == (smoke_runs[1] / "tokenizer.json").read_bytes()


def test_other_seed_other_weights(tmp_path, smoke_runs):
    build_base(tmp_path, BaseConfig(**{**SMOKE, "seed": 1}), measure=False)
    a, b = load_file(smoke_runs[0] / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_lr_schedule_warms_up_then_decays():
    cfg = BaseConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)
    assert lr_at(50, cfg) < lr_at(20, cfg)

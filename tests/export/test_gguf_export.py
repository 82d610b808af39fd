"""GGUF export: the file reads back, tensor by tensor and logit by logit, as the model it came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from orin_unlearn.edge.formats import sha256_file
from orin_unlearn.export.gguf_export import tokenizer_pre, write_gguf
from tests.models import tiny_model_dir, tiny_qwen2, tokenizer_dir

gguf = pytest.importorskip("gguf")


def _field(reader, key):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _raw(reader) -> dict[str, tuple[str, np.ndarray]]:
    """GGUF name -> (GGML type, dequantised array in PyTorch's row-major shape)."""
    out = {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))
        out[t.name] = (t.tensor_type.name, gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape))
    return out


def _interleave(w: torch.Tensor, heads: int) -> np.ndarray:
    """llama.cpp's rotary layout, written out independently: per head, row j of the first half and
    row j of the second half become rows 2j and 2j+1."""
    w = w.detach().numpy()
    half = w.shape[0] // heads // 2
    rows = [h * 2 * half + s * half + j for h in range(heads) for j in range(half) for s in (0, 1)]
    return w[rows]


def _hf_names(arch: str, layers: int, tied: bool) -> set[str]:
    names = {"token_embd.weight", "output_norm.weight"} | (set() if tied else {"output.weight"})
    per_layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up"]
    per_layer += ["ffn_down"] + {"llama": [], "qwen2": ["attn_q.bias", "attn_k.bias", "attn_v.bias"]}.get(
        arch, ["attn_q_norm", "attn_k_norm"]
    )
    for i in range(layers):
        names |= {f"blk.{i}.{n}" if n.endswith(".bias") else f"blk.{i}.{n}.weight" for n in per_layer}
    return names


def _reload_logits_match(model, path: Path) -> None:
    """transformers' GGUF loader gives back every weight exactly and the same logits."""
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    ours, theirs = model.state_dict(), loaded.eval().state_dict()
    assert set(ours) == set(theirs)
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name
    ids = torch.randint(0, model.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(input_ids=ids).logits - loaded(input_ids=ids).logits).abs().max().item()
    assert diff <= 1e-5, diff


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = tiny_model_dir(tmp_path_factory.mktemp("llama"), "llama", layers=2, intermediate=96)
    return folder, AutoModelForCausalLM.from_pretrained(folder).eval()


def test_llama_f32_round_trip(llama, tmp_path):
    from tokenizers import Tokenizer

    folder, model = llama
    facts = write_gguf(model, folder, tmp_path / "m.gguf", "f32")
    path = Path(facts["path"])
    assert facts["bytes"] == path.stat().st_size and facts["sha256"] == sha256_file(path)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it
    reader = gguf.GGUFReader(str(path))
    config = model.config
    expected = {
        "general.architecture": "llama",
        "general.file_type": int(gguf.LlamaFileType.ALL_F32),
        "llama.context_length": config.max_position_embeddings,
        "llama.embedding_length": 64,
        "llama.block_count": 2,
        "llama.feed_forward_length": 96,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 16,
        "llama.rope.freq_base": 100000.0,
        "llama.vocab_size": 384,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",  # tests.models' tokenizer is a plain ByteLevel(use_regex) one
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": (folder / "chat_template.jinja").read_text(),
    }
    assert {key: _field(reader, key) for key in expected} == expected
    assert _field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(config.rms_norm_eps)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert _field(reader, "tokenizer.ggml.tokens") == [tokenizer.id_to_token(i) for i in range(384)]
    types = _field(reader, "tokenizer.ggml.token_type")
    assert types[:3] == [int(gguf.TokenType.CONTROL)] * 3 and set(types[3:]) == {int(gguf.TokenType.NORMAL)}
    merges = json.loads((folder / "tokenizer.json").read_text())["model"]["merges"]
    assert len(_field(reader, "tokenizer.ggml.merges")) == len(merges) > 0

    raw = _raw(reader)
    assert set(raw) == _hf_names("llama", 2, tied=False) and facts["tensors"] == len(raw)
    assert {kind for kind, _ in raw.values()} == {"F32"}
    layer = model.model.layers[1].self_attn
    assert np.array_equal(raw["blk.1.attn_q.weight"][1], _interleave(layer.q_proj.weight, 4))
    assert np.array_equal(raw["blk.1.attn_k.weight"][1], _interleave(layer.k_proj.weight, 2))
    assert np.array_equal(raw["blk.1.attn_v.weight"][1], layer.v_proj.weight.detach().numpy())
    assert np.array_equal(raw["output.weight"][1], model.lm_head.weight.detach().numpy())
    _reload_logits_match(model, path)


def test_qwen2_tied_padded_vocab_round_trip(tmp_path):
    model = tiny_qwen2(4096 + 8, hidden=32, intermediate=64, tie=True)
    folder = tokenizer_dir(tmp_path / "tok", "qwen2")
    facts = write_gguf(model, folder, tmp_path / "out" / "q.gguf", "f32")
    reader = gguf.GGUFReader(facts["path"])
    assert (facts["architecture"], _field(reader, "general.architecture")) == ("qwen2", "qwen2")
    assert _field(reader, "tokenizer.ggml.pre") == "qwen2"
    assert _field(reader, "qwen2.rope.dimension_count") is None  # llama.cpp's converter writes none
    tokens, types = _field(reader, "tokenizer.ggml.tokens"), _field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == 4104 and tokens[4096:] == [f"[PAD{i}]" for i in range(4096, 4104)]
    assert set(types[4096:]) == {int(gguf.TokenType.UNUSED)} and types[4076] == int(gguf.TokenType.CONTROL)
    assert tokens[4076] == "<|im_end|>" and _field(reader, "tokenizer.ggml.eos_token_id") == 4076
    raw = _raw(reader)
    assert set(raw) == _hf_names("qwen2", 2, tied=True)  # no output.weight: llama.cpp reuses token_embd
    attn = model.model.layers[0].self_attn
    assert np.array_equal(raw["blk.0.attn_q.weight"][1], attn.q_proj.weight.detach().numpy())  # not permuted
    assert np.array_equal(raw["blk.0.attn_k.bias"][1], attn.k_proj.bias.detach().numpy())
    _reload_logits_match(model, Path(facts["path"]))


def test_qwen3_q_k_norms_round_trip(tmp_path):
    from transformers import AutoModelForCausalLM

    # head_dim 128 apart from hidden / heads: llama.cpp reads it from attention.key_length;
    # transformers' GGUF loader ignores that key and falls back to Qwen3Config's default, 128
    folder = tiny_model_dir(tmp_path / "base", "qwen3", head_dim=128, tie=True)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    facts = write_gguf(model, folder, tmp_path / "out" / "q3.gguf", "f32")
    reader = gguf.GGUFReader(facts["path"])
    assert (
        _field(reader, "qwen3.attention.key_length") == _field(reader, "qwen3.attention.value_length") == 128
    )
    raw = _raw(reader)
    assert set(raw) == _hf_names("qwen3", 2, tied=True)
    norm = model.model.layers[1].self_attn.k_norm.weight.detach().numpy()
    assert np.array_equal(raw["blk.1.attn_k_norm.weight"][1], norm)
    _reload_logits_match(model, Path(facts["path"]))


def test_q8_0_dequantises_close_and_keeps_norms_f32(llama, tmp_path):
    folder, model = llama
    facts = write_gguf(model, folder, tmp_path / "m.gguf", "q8_0")
    raw = _raw(gguf.GGUFReader(facts["path"]))
    assert _field(gguf.GGUFReader(facts["path"]), "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert facts["tensor_types"] == {"Q8_0": 16, "F32": 5} and not facts["fallbacks"]
    layer = model.model.layers[0]
    pairs = {
        "blk.0.attn_q.weight": _interleave(layer.self_attn.q_proj.weight, 4),
        "blk.0.ffn_down.weight": layer.mlp.down_proj.weight.detach().numpy(),
        "token_embd.weight": model.model.embed_tokens.weight.detach().numpy(),
    }
    for name, want in pairs.items():
        kind, got = raw[name]
        # Q8_0: a scale d = amax / 127 per 32 values, stored as fp16: the error is at most half a
        # step plus 127 times d's fp16 rounding (2**-11 relative), under 0.6 d
        step = np.abs(want.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
        assert kind == "Q8_0" and not np.array_equal(got, want)
        assert (np.abs(got - want).reshape(-1, 32) <= step * 0.6).all(), name
    assert raw["blk.0.attn_norm.weight"][0] == "F32"
    assert np.array_equal(raw["blk.0.attn_norm.weight"][1], layer.input_layernorm.weight.detach().numpy())


def test_q4_1_keeps_the_output_matrix_8_bit_and_records_fallbacks(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = tiny_model_dir(tmp_path / "base", "llama", intermediate=48, tie=True)  # 48: not a multiple of 32
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    facts = write_gguf(model, folder, tmp_path / "m.gguf", "q4_1")
    raw = _raw(gguf.GGUFReader(facts["path"]))
    assert facts["fallbacks"] == {"blk.0.ffn_down.weight": "F16", "blk.1.ffn_down.weight": "F16"}
    assert raw["blk.0.ffn_down.weight"][0] == "F16" and raw["token_embd.weight"][0] == "Q8_0"
    assert raw["blk.0.ffn_up.weight"][0] == raw["blk.1.attn_q.weight"][0] == "Q4_1"
    want = model.model.layers[0].mlp.up_proj.weight.detach().numpy().reshape(-1, 32)
    # Q4_1: per 32 values a minimum m and 16 levels of d = (max - m) / 15, both stored as fp16
    low = want.min(axis=1, keepdims=True)
    step = (want.max(axis=1, keepdims=True) - low) / 15
    err = np.abs(raw["blk.0.ffn_up.weight"][1].reshape(-1, 32) - want)
    assert (err <= step * 0.6 + np.abs(low) * 2**-10).all()


def test_tokenizer_pre_is_read_from_the_pre_tokenizer(tmp_path):
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    smollm = {
        "type": "Sequence",
        "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level],
    }
    qwen = json.loads((tokenizer_dir(tmp_path, "qwen2") / "tokenizer.json").read_text())
    llama3 = json.loads(json.dumps(qwen).replace(r"|\\p{N}|", r"|\\p{N}{1,3}|"))
    assert tokenizer_pre({"pre_tokenizer": byte_level}, "llama") == ("gpt-2", True)
    assert tokenizer_pre({"pre_tokenizer": smollm}, "llama") == ("smollm", True)
    assert tokenizer_pre(qwen, "qwen2") == ("qwen2", True)
    assert tokenizer_pre(llama3, "llama") == ("llama-bpe", True)
    assert tokenizer_pre({"pre_tokenizer": {"type": "Metaspace"}}, "qwen3") == ("qwen2", False)


def test_bad_input_raises_one_line_value_errors(llama, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder, model = llama
    with pytest.raises(ValueError, match="unknown GGUF outtype 'q5_k'") as err:
        write_gguf(model, folder, tmp_path / "m.gguf", "q5_k")
    assert "\n" not in str(err.value)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=384, n_positions=32))
    with pytest.raises(ValueError, match="model_type 'gpt2'") as err:
        write_gguf(gpt2, folder, tmp_path / "m.gguf", "f16")
    assert "\n" not in str(err.value)
    model.config.rope_scaling = {"rope_type": "llama3", "factor": 8.0}
    try:
        with pytest.raises(ValueError, match="rope scaling"):
            write_gguf(model, folder, tmp_path / "m.gguf", "f16")
    finally:
        model.config.rope_scaling = None
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        write_gguf(model, tmp_path, tmp_path / "m.gguf", "f16")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_f16_replaces_an_old_file(llama, tmp_path):
    folder, model = llama
    path = tmp_path / "m.gguf"
    path.write_bytes(b"old")
    facts = write_gguf(model, folder, path, "f16")
    assert facts["tensor_types"] == {"F16": 16, "F32": 5} and facts["sha256"] == sha256_file(path)
    assert path.read_bytes()[:4] == b"GGUF"


@pytest.mark.slow
def test_smollm2_q4_1_reproduces_the_shipped_gguf(smollm2_checkpoint, tmp_path):
    """Imported SmolLM2 (dequantised from its Q4_1 GGUF) written back as q4_1 is that GGUF again,
    tensor for tensor and byte for byte, with the same vocabulary and merges."""
    from transformers import AutoModelForCausalLM

    from orin_unlearn.train.gguf_import import smollm2_gguf

    model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint, dtype=torch.float32).eval()
    facts = write_gguf(model, smollm2_checkpoint, tmp_path / "smol.gguf", "q4_1")
    ours, shipped = gguf.GGUFReader(facts["path"]), gguf.GGUFReader(str(smollm2_gguf()))
    theirs = {t.name: t for t in shipped.tensors}
    assert sorted(t.name for t in ours.tensors) == sorted(theirs)
    for t in ours.tensors:
        assert t.tensor_type == theirs[t.name].tensor_type and np.array_equal(t.data, theirs[t.name].data), (
            t.name
        )
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
        assert _field(ours, key) == _field(shipped, key), key

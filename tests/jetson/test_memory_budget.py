"""The memory budget: parameter counts against real checkpoints, KV sizes, and refusals on modules."""

from __future__ import annotations

import json

import pytest
from safetensors.numpy import load_file

from orin_unlearn.edge.backends.trt_backend import KvPlan
from orin_unlearn.edge.device.memory_budget import (
    BUILD_FACTOR,
    RUNTIME_OVERHEAD,
    MemoryBudgetError,
    ModelMemory,
    build_need,
    check,
    count_parameters,
    kv_cache_bytes,
    mem_available,
    parse_meminfo,
    run_need,
)
from tests.jetson.simulated import sample

# Published Hugging Face configs (the keys the budget reads).
QWEN25_05B = {
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
QWEN25_3B = {
    "model_type": "qwen2",
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
NANO = parse_meminfo(sample("meminfo_orin_nano_8gb.txt"))["MemAvailable"]
AGX64 = parse_meminfo(sample("meminfo_agx_orin_64gb.txt"))["MemAvailable"]


def test_meminfo_in_bytes():
    info = parse_meminfo(sample("meminfo_orin_nano_8gb.txt"))
    assert info["MemAvailable"] == 5512332 * 1024 and info["MemTotal"] == 7802844 * 1024
    assert info["HugePages_Total"] == 0  # a count, not kB
    assert parse_meminfo("garbage\nMemAvailable: lots kB\n") == {}


def test_mem_available_reads_under_a_root(jetson_root, tmp_path):
    assert mem_available(jetson_root) == NANO
    assert mem_available(tmp_path / "nowhere") is None


def test_parameter_count_matches_the_shipped_tiny_base(base_dir):
    tensors = {}
    for path in sorted(base_dir.glob("*.safetensors")):
        tensors.update(load_file(path))
    config = json.loads((base_dir / "config.json").read_text())
    assert count_parameters(config) == sum(t.size for t in tensors.values())


def test_parameter_count_of_qwen25_05b():
    # 494,032,768: the parameter count of Qwen2.5-0.5B (README's decode table says 494 M)
    assert count_parameters(QWEN25_05B) == 494_032_768
    untied = dict(QWEN25_05B, tie_word_embeddings=False)
    assert count_parameters(untied) - count_parameters(QWEN25_05B) == 151936 * 896


def test_kv_cache_agrees_with_the_trt_backends_buffers():
    model = ModelMemory.from_config(QWEN25_3B, dtype="float16")
    plan = KvPlan(layers=36, kv_heads=2, head_dim=128, max_context=4096, itemsize=2)
    assert model.kv_cache_bytes(4096) * 2 == plan.total_bytes()  # the backend keeps two (ping-pong)
    assert kv_cache_bytes(36, 2, 128, 4096, batch=3, dtype_bytes=2) == 3 * model.kv_cache_bytes(4096)


def test_3b_fp16_on_an_orin_nano_8gb_is_refused():
    model = ModelMemory.from_config(QWEN25_3B, dtype="float16", name="Qwen2.5-3B")
    assert round(count_parameters(QWEN25_3B) / 1e9, 2) == 3.09  # Qwen2.5-3B's published size
    assert model.weight_bytes == 2 * count_parameters(QWEN25_3B)
    with pytest.raises(MemoryBudgetError) as err:
        check(run_need(model.weight_bytes, model.kv_cache_bytes(4096)), NANO, model.name)
    message = str(err.value)
    assert "serving the model (Qwen2.5-3B)" in message and "MemAvailable is 5.26 GiB" in message
    assert "int8/int4" in message and "smaller model" in message and "--no-memory-check" in message
    assert err.value.available_bytes == NANO and err.value.need_bytes > NANO
    with pytest.raises(MemoryBudgetError, match="building the engine"):
        check(build_need(model.weight_bytes), NANO, model.name)


def test_what_fits_where():
    small = ModelMemory.from_config(QWEN25_05B, dtype="float16")
    check(run_need(small.weight_bytes, small.kv_cache_bytes(4096)), NANO)
    check(build_need(small.weight_bytes), NANO)
    big = ModelMemory.from_config(QWEN25_3B, dtype="float16")
    check(build_need(big.weight_bytes), AGX64)
    int4 = ModelMemory.from_config(QWEN25_3B, dtype="int4")
    assert int4.kv_dtype_bytes == 4  # weight-only int4 graphs keep activations and KV in fp32
    check(run_need(int4.weight_bytes, int4.kv_cache_bytes(4096)), NANO)


def test_need_arithmetic():
    need = build_need(1000)
    assert need.total_bytes == int(1000 * BUILD_FACTOR) and need.parts["weights"] == 1000
    need = run_need(1_000_000, 50_000)
    assert need.total_bytes == 1_000_000 + 50_000 + 100_000 + RUNTIME_OVERHEAD
    # a plan held twice while loading outweighs a small KV cache
    assert run_need(1_000_000, 50_000, load_copy_bytes=1_000_000).total_bytes == 2_000_000 + RUNTIME_OVERHEAD
    with pytest.raises(ValueError):
        run_need(-1, 0)


def test_stage_folder_uses_measured_weights_and_the_manifests_variant(tmp_path):
    config = {k: v for k, v in QWEN25_05B.items() if k != "torch_dtype"}
    (tmp_path / "config.json").write_text(
        json.dumps(dict(config, dtype="float32"))
    )  # as transformers 4.57 writes
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"variant": "fp16"}}))
    (tmp_path / "model.onnx").write_bytes(b"x" * 1000)
    (tmp_path / "model.onnx_data").write_bytes(b"x" * 5000)
    model = ModelMemory.from_dir(tmp_path)
    assert model.weight_bytes == 6000 and model.kv_dtype_bytes == 2 and model.parameters is None
    (tmp_path / "manifest.json").unlink()
    assert ModelMemory.from_dir(tmp_path).kv_dtype_bytes == 4  # the config's own dtype
    with pytest.raises(ValueError, match="cannot read"):
        ModelMemory.from_dir(tmp_path / "missing")


def test_bad_configs_name_the_key_or_value():
    with pytest.raises(ValueError, match="'num_hidden_layers'"):
        ModelMemory.from_config({k: v for k, v in QWEN25_3B.items() if k != "num_hidden_layers"})
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        ModelMemory.from_config(QWEN25_3B, dtype="float8")
    assert ModelMemory.from_config(QWEN25_3B, dtype="torch.float16").kv_dtype_bytes == 2

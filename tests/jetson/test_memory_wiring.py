"""The memory budget where it guards: before an engine build and before an engine is loaded; the
build's timing cache location and the files the engine folder gets for serving."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.edge import cli
from orin_unlearn.edge.backends import trt_backend
from orin_unlearn.edge.device.engine_manifest import DeviceInfo, stamp
from orin_unlearn.edge.device.memory_budget import BUILD_FACTOR, RUNTIME_OVERHEAD, MemoryBudgetError
from orin_unlearn.edge.trt_engine import TensorRTUnavailableError, tensorrt_available
from orin_unlearn.export import trt_build
from orin_unlearn.export.trt_profiles import DecoderShape

CONFIG = {
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_size": 64,
    "max_position_embeddings": 256,
}
SHAPE = DecoderShape.from_config(CONFIG)
MIB = 1024**2


def set_mem_available(root, kib: int) -> None:
    (root / "proc" / "meminfo").write_text(f"MemTotal: 7802844 kB\nMemAvailable: {kib} kB\n")


@pytest.fixture
def graph(tmp_path):
    """An ONNX stage folder whose graph weighs 3 MiB on disk (1 MiB + 2 MiB external data)."""
    folder = tmp_path / "onnx-fp16"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\0" * MIB)
    (folder / "model.onnx_data").write_bytes(b"\0" * 2 * MIB)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    return folder / "model.onnx"


def test_build_is_refused_on_a_jetson_that_cannot_hold_it(graph, jetson_root, tmp_path):
    assert trt_build.graph_bytes(graph) == 3 * MIB
    set_mem_available(jetson_root, 10 * 1024)  # 10 MiB < 3 MiB x 3.5
    with pytest.raises(MemoryBudgetError, match=r"building the engine .* MemAvailable is 0\.01 GiB") as err:
        trt_build.build_engine(graph, tmp_path / "engine", SHAPE, 16, system_root=jetson_root)
    assert err.value.need_bytes == int(3 * MIB * BUILD_FACTOR)
    assert not (tmp_path / "engine").exists()


def test_build_passes_the_check_when_it_fits_or_is_told_to(graph, jetson_root, tmp_path):
    if tensorrt_available()[0]:
        pytest.skip("TensorRT is available here; this test stops at its absence")
    set_mem_available(jetson_root, 12 * 1024)  # 12 MiB > 10.5 MiB
    assert trt_build.check_build_memory(graph, jetson_root).total_bytes == int(3 * MIB * BUILD_FACTOR)
    with pytest.raises(TensorRTUnavailableError):
        trt_build.build_engine(graph, tmp_path / "engine", SHAPE, 16, system_root=jetson_root)
    set_mem_available(jetson_root, 1024)
    with pytest.raises(TensorRTUnavailableError):  # the check is skipped, the build goes on
        trt_build.build_engine(graph, tmp_path / "e", SHAPE, 16, memory_check=False, system_root=jetson_root)


def test_no_build_check_off_a_jetson(graph, tmp_path):
    (tmp_path / "proc").mkdir()
    set_mem_available(tmp_path, 1)
    assert trt_build.check_build_memory(graph, tmp_path) is None


def test_cli_timing_cache_default_and_opt_outs(graph, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = ["--onnx", str(graph), "--out", str(tmp_path / "engine"), "--max-prompt", "16", "--print-trtexec"]
    assert cli.main(["export", "engine", *base]) == 0
    cache = tmp_path / "cache" / "orin-unlearn" / "tensorrt-timing.cache"
    assert f"--timingCacheFile={cache}" in capsys.readouterr().out
    assert cli.main(["export", "engine", *base, "--no-timing-cache", "--no-memory-check"]) == 0
    assert "--timingCacheFile" not in capsys.readouterr().out


def engine_dir(tmp_path, plan_bytes: int):
    """A finished engine stage for the 2-layer shape with a plan of `plan_bytes`."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph")
    folder = tmp_path / "engine"
    folder.mkdir()
    (folder / "model.plan").write_bytes(b"\0" * plan_bytes)
    settings = {"shape": {"layers": 2, "kv_heads": 2, "head_dim": 16, "max_context": 256}, "max_prompt": 16}
    stamp(folder, onnx, DeviceInfo("10.3.0", "Orin", "8.7", "36.4.3"), settings)
    return folder


def test_engine_load_check(jetson_root, tmp_path):
    folder = engine_dir(tmp_path, 4 * MIB)
    kv = 4 * 2 * 2 * 256 * 16 * 2  # key+value x ping-pong x layers x heads x context x head_dim x fp16
    set_mem_available(jetson_root, 4 * 1024 * 1024)
    need = trt_backend.check_memory(folder, jetson_root)
    # the plan is held twice while deserialised, which outweighs the small KV cache here
    assert need is not None and need.parts["KV cache"] == kv
    assert need.total_bytes == 2 * 4 * MIB + RUNTIME_OVERHEAD
    set_mem_available(jetson_root, 256 * 1024)  # 256 MiB: less than the runtime alone
    with pytest.raises(MemoryBudgetError, match="serving the model") as err:
        trt_backend.check_memory(folder, jetson_root)
    assert "memory_check=False" in str(err.value)


def test_engine_folder_gets_what_serving_reads(base_dir, tmp_path):
    from orin_unlearn.edge.tokenizer import ChatTokenizer

    engine = tmp_path / "engine"
    engine.mkdir()
    copied = trt_build.copy_serving_files(base_dir, engine)
    assert {"tokenizer.json", "config.json"} <= set(copied)
    assert not list(engine.glob("*.safetensors"))  # the weights stay behind
    ids = ChatTokenizer(engine).encode_chat([{"role": "user", "content": "a film like Inception?"}])
    assert ids == ChatTokenizer(base_dir).encode_chat([{"role": "user", "content": "a film like Inception?"}])

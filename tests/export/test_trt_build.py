from __future__ import annotations

import json

import numpy as np
import pytest

from orin_unlearn.edge import cli
from orin_unlearn.edge.device.engine_manifest import DeviceInfo, stamp
from orin_unlearn.edge.errors import DeviceMismatchError, ManifestError
from orin_unlearn.edge.trt_engine import TensorRTUnavailableError, load_engine, tensorrt_available
from orin_unlearn.export.trt_build import build_engine
from orin_unlearn.export.trt_profiles import DecoderShape, decoder_profiles


def main(argv: list[str]) -> int:
    """The command as the console script runs it (errors become exit statuses in the CLI)."""
    return cli.main(["export", "engine", *argv])


CONFIG = {
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "hidden_size": 16,
    "max_position_embeddings": 64,
}
SHAPE = DecoderShape.from_config(CONFIG)  # 1 layer, 1 KV head, head_dim 8
VOCAB = 32
ORIN = DeviceInfo("10.3.0", "Orin", "8.7", "36.4.3")


def tiny_decoder_onnx(path, shape: DecoderShape = SHAPE, vocab: int = VOCAB):
    """A decoder-shaped graph (embeddings, LM head, KV concat) with the real input/output names."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dim = shape.head_dim
    weights = {
        "tok_emb": rng.standard_normal((vocab, dim), dtype=np.float32),
        "pos_emb": rng.standard_normal((shape.max_context, dim), dtype=np.float32),
        "lm_head": rng.standard_normal((dim, vocab), dtype=np.float32),
        "zero": np.zeros((), np.float32),
        "axis1": np.array([1], np.int64),
        "axis2": np.array([2], np.int64),
    }
    kv = ["batch", shape.kv_heads, "past", dim]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
    ] + [helper.make_tensor_value_info(n, TensorProto.FLOAT, kv) for n in shape.kv_names()]
    nodes = [
        helper.make_node("Gather", ["tok_emb", "input_ids"], ["tok"]),
        helper.make_node("Gather", ["pos_emb", "position_ids"], ["pos"]),
        helper.make_node("Add", ["tok", "pos"], ["h"]),
        helper.make_node("MatMul", ["h", "lm_head"], ["scores"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f", "axis1"], ["mask_sum"], keepdims=1),
        helper.make_node("Unsqueeze", ["mask_sum", "axis2"], ["mask_sum3"]),
        helper.make_node("Mul", ["mask_sum3", "zero"], ["mask_zero"]),
        helper.make_node("Add", ["scores", "mask_zero"], ["logits"]),
        helper.make_node("Unsqueeze", ["h", "axis1"], ["h_kv"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])]
    for i in range(shape.layers):
        for kind in ("key", "value"):
            name = f"present.{i}.{kind}"
            nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.{kind}", "h_kv"], [name], axis=2))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1, "total", dim]))
    graph = helper.make_graph(
        nodes, "tiny_decoder", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in weights.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def no_tensorrt():
    ok, reason = tensorrt_available()
    if ok:
        pytest.skip(f"TensorRT is available here ({reason}); this test covers its absence")
    return reason


@pytest.fixture
def onnx_dir(tmp_path):
    folder = tmp_path / "onnx-fp32"
    folder.mkdir()
    tiny_decoder_onnx(folder / "model.onnx")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    return folder


def test_tiny_graph_is_a_valid_decoder(onnx_dir):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == SHAPE.input_names()
    for past, seq in ((0, 5), (5, 1)):  # a prefill and a decode step
        feeds = {
            "input_ids": np.ones((1, seq), np.int64),
            "attention_mask": np.ones((1, past + seq), np.int64),
            "position_ids": np.arange(past, past + seq, dtype=np.int64)[None],
        }
        feeds.update({n: np.zeros((1, 1, past, 8), np.float32) for n in SHAPE.kv_names()})
        logits, key, _ = session.run(None, feeds)
        assert logits.shape == (1, seq, VOCAB) and key.shape == (1, 1, past + seq, 8)


def test_tensorrt_absent_is_reported_with_a_reason(no_tensorrt):
    assert no_tensorrt and "tensorrt" in no_tensorrt.lower()


def test_build_engine_raises_typed_error(no_tensorrt, onnx_dir, tmp_path):
    with pytest.raises(TensorRTUnavailableError, match="^TensorRT not available here: ") as err:
        build_engine(onnx_dir / "model.onnx", tmp_path / "engine", SHAPE, max_prompt=16)
    assert isinstance(err.value, RuntimeError)
    assert not (tmp_path / "engine").exists()


def test_main_prints_trtexec_then_exits_3(no_tensorrt, onnx_dir, tmp_path, capsys):
    out = tmp_path / "engine"
    argv = ["--onnx", str(onnx_dir / "model.onnx"), "--out", str(out), "--max-prompt", "16", "--refit"]
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert f"trtexec --onnx={onnx_dir / 'model.onnx'} --saveEngine={out / 'model.plan'}" in captured.out
    assert "--profile=1" in captured.out and "--refit" in captured.out
    assert "TensorRT not available here: " in captured.err


def test_main_print_trtexec_only_and_bad_config(onnx_dir, tmp_path, capsys):
    onnx_path = str(onnx_dir / "model.onnx")
    assert main(["--onnx", onnx_path, "--out", str(tmp_path / "e"), "--print-trtexec"]) == 0
    assert "--maxShapes=input_ids:1x64," in capsys.readouterr().out  # default prompt capped by the context
    assert main(["--onnx", onnx_path, "--out", str(tmp_path / "e"), "--max-prompt", "65"]) == 2
    assert "max_prompt 65" in capsys.readouterr().err
    assert main(["--onnx", onnx_path, "--out", "e", "--config", str(tmp_path / "none.json")]) == 2


def _fake_engine_dir(tmp_path, onnx_path, device):
    engine = tmp_path / "engine"
    engine.mkdir()
    (engine / "model.plan").write_bytes(b"serialized plan")
    stamp(engine, onnx_path, device, {"refit": False})
    return engine


def test_load_engine_checks_the_device_before_deserialising(onnx_dir, tmp_path):
    engine = _fake_engine_dir(tmp_path, onnx_dir / "model.onnx", ORIN)
    with pytest.raises(
        DeviceMismatchError, match="gpu_name: built with 'Orin', this device has 'NVIDIA H100'"
    ):
        load_engine(engine, device=DeviceInfo("10.3.0", "NVIDIA H100", "9.0", None))
    (engine / "model.plan").write_bytes(b"tampered")
    with pytest.raises(ManifestError, match="model.plan"):
        load_engine(engine, device=ORIN)


def test_load_engine_on_a_matching_device_needs_tensorrt(no_tensorrt, onnx_dir, tmp_path):
    engine = _fake_engine_dir(tmp_path, onnx_dir / "model.onnx", ORIN)
    with pytest.raises(TensorRTUnavailableError):
        load_engine(engine, device=ORIN)


@pytest.mark.tensorrt
@pytest.mark.slow
def test_builds_and_loads_a_real_engine(onnx_dir, tmp_path):
    cache = tmp_path / "timing.cache"
    out = build_engine(
        onnx_dir / "model.onnx", tmp_path / "engine", SHAPE, max_prompt=16, timing_cache_path=cache
    )
    assert (out / "model.plan").stat().st_size > 0 and cache.stat().st_size > 0
    loaded = load_engine(out)
    assert loaded.manifest["ok"] and loaded.engine.num_optimization_profiles == 2
    for index, spec in enumerate(decoder_profiles(SHAPE, max_prompt=16)):
        for name, expected in spec.shapes().items():
            got = loaded.engine.get_tensor_profile_shape(name, index)
            assert tuple(tuple(d) for d in got) == expected, (spec.name, name)

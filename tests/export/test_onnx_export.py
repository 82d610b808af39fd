"""ONNX export of a tiny random Qwen2 (built in-process): graph passes, precision, parity, saving."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from transformers import Qwen2ForCausalLM

from orin_unlearn.edge.backends.ort_backend import GRAPH, OrtDecoder
from orin_unlearn.edge.batching import left_pad, positions_of
from orin_unlearn.export import onnx_graph, validate
from orin_unlearn.export.onnx_export import export_onnx
from tests.models import tiny_qwen2

VOCAB = 96


def tiny_model() -> Qwen2ForCausalLM:
    return tiny_qwen2(VOCAB, tie=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{(dtype, last_logits): (graph folder, facts)} for the variants the tests compare."""
    out = {}
    for dtype, last in (("float32", True), ("float32", False), ("float16", True)):
        folder = tmp_path_factory.mktemp(f"{dtype}-{last}")
        out[dtype, last] = folder, export_onnx(tiny_model(), folder, dtype, last_logits=last)
    return out


def prompts(n: int = 6) -> list[list[int]]:
    return validate.random_prompts(n, 0, VOCAB, seed=1, lengths=(3, 20))


def test_graph_has_kv_cache_inputs_and_outputs(exported):
    folder, facts = exported["float32", True]
    graph = onnx.load(str(folder / GRAPH))
    inputs = [i.name for i in graph.graph.input]
    outputs = [o.name for o in graph.graph.output]
    layers = [f"{i}.{k}" for i in range(2) for k in ("key", "value")]
    assert inputs == [
        "input_ids",
        "attention_mask",
        "position_ids",
        *(f"past_key_values.{x}" for x in layers),
    ]
    assert outputs == ["logits", *(f"present.{x}" for x in layers)]
    assert facts["opset"] in (17, 18) and graph.opset_import[0].version == facts["opset"]
    assert onnx_graph.custom_ops(graph) == []
    assert (folder / "config.json").is_file()


def test_last_position_logits_equal_the_last_row_of_full_logits(exported):
    last = OrtDecoder(exported["float32", True][0] / GRAPH)
    full = OrtDecoder(exported["float32", False][0] / GRAPH)
    ids, mask = left_pad(prompts(), pad_id=0)
    args = (ids, mask, positions_of(mask), last.empty_past(len(ids)))
    got, present = last.step(*args)
    want, _ = full.step(*args)
    assert got.shape == (len(ids), 1, VOCAB)
    assert want.shape == (len(ids), ids.shape[1], VOCAB)
    np.testing.assert_allclose(got[:, 0], want[:, -1], atol=1e-5)
    assert present[0].shape == (len(ids), 2, ids.shape[1], 8)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_prefill_and_decode_match_torch(exported, dtype):
    folder, _ = exported[dtype, True]
    parity = validate.logit_parity(tiny_model(), OrtDecoder(folder / GRAPH), prompts(12), pad_id=0)
    assert validate.parity_problems(parity, validate.TOLERANCES[dtype]) == []
    assert "decode" in parity  # the KV-cache path was compared too


def test_fp16_graph_keeps_sensitive_math_in_fp32(exported):
    folder, facts = exported["float16", True]
    assert facts["upcast_softmax"] == 2  # one attention softmax per layer
    report = onnx_graph.precision_report(onnx.load(str(folder / GRAPH)))
    assert set(report) >= {"Softmax", "ReduceMean", "Pow", "Sin", "Cos"}
    assert onnx_graph.fp32_problems(report) == []
    weights = [i for i in onnx.load(str(folder / GRAPH)).graph.initializer if len(i.dims) == 2]
    assert {w.data_type for w in weights} == {onnx.TensorProto.FLOAT16}


def test_precision_report_flags_half_precision_softmax():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT16, [2, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT16, [2, 3])
    node = onnx.helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x], [y]))
    assert onnx_graph.fp32_problems(onnx_graph.precision_report(model)) == ["Softmax computes in FLOAT16"]
    assert onnx_graph.upcast_attention(model) == 1
    assert onnx_graph.fp32_problems(onnx_graph.precision_report(model)) == []


def test_external_data_round_trip(exported, tmp_path):
    folder, _ = exported["float32", True]
    graph = onnx.load(str(folder / GRAPH))
    assert onnx_graph.save(graph, tmp_path / GRAPH, external_over=0)
    assert (
        tmp_path / (GRAPH + onnx_graph.EXTERNAL_DATA_SUFFIX)
    ).stat().st_size > 0.9 * onnx_graph.weight_bytes(graph)
    ids, mask = left_pad(prompts(), pad_id=0)
    a, b = OrtDecoder(folder / GRAPH), OrtDecoder(tmp_path / GRAPH)
    feed = (ids, mask, positions_of(mask), a.empty_past(len(ids)))
    np.testing.assert_array_equal(a.step(*feed)[0], b.step(*feed)[0])


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        export_onnx(tiny_model(), tmp_path, "bfloat16")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_model(), tmp_path, "float32", opset=13)

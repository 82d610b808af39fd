"""onnxruntime backend: padding, positions, graph checks, and greedy decoding equal to transformers'."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from orin_unlearn.edge.backends.ort_backend import GRAPH, GraphShape, OrtDecoder
from orin_unlearn.edge.batching import left_pad, positions_of


def test_left_pad_right_aligns_rows():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [0, 0, 8]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(positions_of(mask), [[0, 1, 2], [0, 0, 0]])
    assert ids.dtype == mask.dtype == np.int64


def arg(name: str, shape: list, type_: str = "tensor(float)") -> SimpleNamespace:
    return SimpleNamespace(name=name, shape=shape, type=type_)


def test_graph_shape_reads_the_kv_inputs():
    inputs = [
        arg("input_ids", ["b", "s"], "tensor(int64)"),
        arg("attention_mask", ["b", "t"], "tensor(int64)"),
    ]
    inputs += [arg("position_ids", ["b", "s"], "tensor(int64)")]
    inputs += [
        arg(f"past_key_values.{i}.{k}", ["b", 2, "p", 16], "tensor(float16)")
        for i in range(3)
        for k in ("key", "value")
    ]
    shape = GraphShape.from_inputs(inputs)
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.kv_dtype) == (3, 2, 16, np.float16)


def test_graph_without_cache_is_refused():
    with pytest.raises(ValueError, match="not a decoder graph with a KV cache"):
        GraphShape.from_inputs([arg("input_ids", ["b", "s"], "tensor(int64)")])


def test_greedy_equals_transformers_generate(tmp_path):
    from orin_unlearn.export.onnx_export import export_onnx
    from tests.export.test_onnx_export import VOCAB, tiny_model

    export_onnx(tiny_model(), tmp_path, "float32")
    decoder = OrtDecoder(tmp_path / GRAPH)
    prompts = [[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13, 14]]
    got = decoder.greedy(prompts, max_new_tokens=12, stop_ids=[VOCAB - 1], pad_id=0)
    model = tiny_model()
    for prompt, tokens in zip(prompts, got, strict=True):
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=VOCAB - 1, pad_token_id=0
        )
        want = [t for t in out[0, len(prompt) :].tolist() if t != VOCAB - 1]
        assert tokens == want[: len(tokens)] and len(tokens) == len(want)

"""The decode benchmark: roofline arithmetic on a hand-made graph, and its JSON contract."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from orin_unlearn.benchmarks import roofline
from orin_unlearn.edge import cli


def test_weight_bytes_exclude_gathered_tables(tmp_path):
    table = numpy_helper.from_array(np.zeros((1000, 8), np.float32), "embed")  # 32,000 bytes, gathered
    head = numpy_helper.from_array(np.zeros((8, 1000), np.float16), "head")  # 16,000 bytes, read per token
    nodes = [
        helper.make_node("Gather", ["embed", "ids"], ["h"]),
        helper.make_node("MatMul", ["h", "head"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT16, [1, 1, 1000])],
        [table, head],
    )
    onnx.save(helper.make_model(graph), tmp_path / "model.onnx")
    assert roofline.weight_bytes_per_token(tmp_path / "model.onnx") == 16_000
    # a node nobody reads from is dead: it reads nothing per token
    graph.node.append(helper.make_node("Transpose", ["embed"], ["embed_t"]))
    onnx.save(helper.make_model(graph), tmp_path / "model.onnx")
    assert roofline.weight_bytes_per_token(tmp_path / "model.onnx") == 16_000
    # a tied table that a live LM head also reads (through that Transpose) counts, once
    graph.node.append(helper.make_node("MatMul", ["h", "embed_t"], ["tied"]))
    graph.output.append(helper.make_tensor_value_info("tied", TensorProto.FLOAT, [1, 1, 1000]))
    onnx.save(helper.make_model(graph), tmp_path / "model.onnx")
    assert roofline.weight_bytes_per_token(tmp_path / "model.onnx") == 48_000


def test_read_bandwidth_is_plausible():
    bandwidth = roofline.read_bandwidth(threads=1, mib=64, repeats=2)
    assert 1e8 < bandwidth < 1e12  # between 0.1 GB/s and 1 TB/s


def test_json_last_line_and_ratios(onnx_dir, capsys):
    assert (
        cli.main(
            ["bench", "decode", "--model", str(onnx_dir), "--tokens", "8", "--repeats", "1", "--threads", "1"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["raw_tokens_per_s"] > 0 and result["generator_tokens_per_s"] > 0
    # one repeat: the paired median is the single ratio (from unrounded rates; 4 decimals)
    ratio = result["generator_tokens_per_s"] / result["raw_tokens_per_s"]
    assert result["generator_vs_raw"] == pytest.approx(ratio, abs=2e-4)
    assert result["generator_vs_raw"] == result["generator_vs_raw_best"]
    limit = result["read_bandwidth_gb_s"] * 1e9 / result["weight_bytes_per_token"]
    assert abs(result["roofline_tokens_per_s"] - limit) < 0.01 * limit

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
    assert 1e8 < bandwidth < 1e13  # between 0.1 GB/s and 10 TB/s (64 MiB may sit in a cache)


ARGV = ["--tokens", "8", "--repeats", "1", "--threads", "1", "--probe-mib", "16"]


def test_json_last_line_and_ratios(onnx_dir, capsys):
    assert cli.main(["bench", "decode", "--model", str(onnx_dir), *ARGV]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["raw_tokens_per_s"] > 0 and result["generator_tokens_per_s"] > 0
    # one repeat: the paired median is the single ratio (from unrounded rates; 4 decimals)
    ratio = result["generator_tokens_per_s"] / result["raw_tokens_per_s"]
    assert result["generator_vs_raw"] == pytest.approx(ratio, abs=2e-4)
    assert result["generator_vs_raw"] == result["generator_vs_raw_best"]
    limit = result["read_bandwidth_gb_s"] * 1e9 / result["weight_bytes_per_token"]
    assert abs(result["roofline_tokens_per_s"] - limit) < 0.01 * limit
    assert 0 < result["roofline_fraction"] <= 1
    record = result["bandwidth"]
    assert (record["threads"], record["buffer_mib"]) == (1, 16)
    assert record["gb_s"] == result["read_bandwidth_gb_s"]
    assert record["method"] in (*record["methods_gb_s"], roofline.DECODE_IMPLIED)


def test_a_decode_faster_than_the_probe_raises_the_limit(onnx_dir, capsys, monkeypatch):
    from orin_unlearn.benchmarks import decode_bench

    slow = roofline.Bandwidth(1e6, "numpy-sum-fp32", {"numpy-sum-fp32": 1e6}, 16, 8, 1, 1)
    monkeypatch.setattr(decode_bench, "measure_bandwidth", lambda threads, mib: slow)
    assert cli.main(["bench", "decode", "--model", str(onnx_dir), *ARGV]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["roofline_fraction"] == 1.0
    assert result["bandwidth"]["raised_by_decode"] and result["bandwidth"]["probe_gb_s"] == 0.001
    assert result["bandwidth"]["method"] == roofline.DECODE_IMPLIED
    assert "under-measured" in result["bandwidth"]["warnings"][0] and "implied by the decode" in out
    # the limit is now the raw loop's own rate (both rounded to 2 decimals)
    assert result["roofline_tokens_per_s"] == pytest.approx(result["raw_tokens_per_s"], abs=0.02)

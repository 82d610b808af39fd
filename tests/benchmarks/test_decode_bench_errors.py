"""`orin-unlearn bench decode` on a folder it cannot bench: one line on stderr naming the file and
the problem, exit status 2, no traceback."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from orin_unlearn.benchmarks.world import tiny_base_dir
from orin_unlearn.edge import cli
from orin_unlearn.edge.formats import make_manifest, write_manifest
from orin_unlearn.export.merge import copy_tokenizer


def not_a_decoder() -> bytes:
    """A valid ONNX graph (one MatMul) with no KV cache inputs."""
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    return helper.make_model(graph).SerializeToString()


def stage(tmp_path, graph: bytes):
    """An ONNX stage folder (config, tokenizer) whose model.onnx holds `graph`."""
    shutil.copy2(tiny_base_dir() / "config.json", tmp_path / "config.json")
    copy_tokenizer(tiny_base_dir(), tmp_path)
    (tmp_path / "model.onnx").write_bytes(graph)
    write_manifest(
        tmp_path, make_manifest("onnx-fp32", {}, None, {}, True)
    )  # verified: the graph is the problem
    return tmp_path


def run_main(capsys, folder) -> tuple[int, str]:
    code = cli.main(["bench", "decode", "--model", str(folder), "--tokens", "2", "--repeats", "1"])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda tmp: tiny_base_dir(), "a Hugging Face checkpoint; export it first"),
        (lambda tmp: tmp, "does not exist"),
        (lambda tmp: stage(tmp, not_a_decoder()[:-7]), "cannot be loaded by onnxruntime"),
        (lambda tmp: stage(tmp, b"\x00garbage" * 64), "cannot be loaded by onnxruntime"),
        (lambda tmp: stage(tmp, not_a_decoder()), "not a decoder graph with a KV cache"),
    ],
    ids=["hf-checkpoint", "empty-folder", "truncated-graph", "garbage-graph", "not-a-decoder"],
)
def test_unusable_folder_is_one_line_and_exit_2(tmp_path, capsys, make, problem):
    folder = make(tmp_path)
    code, err = run_main(capsys, folder)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert str(folder / "model.onnx") in err and problem in err

"""Passes over an exported decoder graph: last-position logits, fp32 attention scores, checks.

optimum's text-generation-with-past export computes logits for every position, and traces
`softmax(x, dtype=float32)` as a half-precision Softmax followed by a Cast. Both are fixed here on
the ONNX graph itself, so the result does not depend on how an exporter version traces them:

- `last_position_logits` slices the hidden states to the last position *before* the LM head, so a
  2k-token prefill never materialises [batch, 2k, vocab] logits;
- `upcast_attention` runs the mask addition and the Softmax of every attention in fp32;
- `precision_report` / `fp32_problems` say which dtype each numerically sensitive op (RMSNorm's
  Pow/ReduceMean/Sqrt, Softmax, rotary Sin/Cos) computes in, and which are not fp32;
- `custom_ops` lists nodes outside the standard ONNX domain (TensorRT's parser has none of them).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LOGITS = "logits"
EXTERNAL_DATA_SUFFIX = "_data"
PROTOBUF_LIMIT = 2 * 1024**3
SENSITIVE_OPS = ("Softmax", "ReduceMean", "Pow", "Sqrt", "Sin", "Cos")
STANDARD_DOMAINS = ("", "ai.onnx")


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def last_position_logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """Slice the LM head's input to the last position, so `logits` is [batch, 1, vocab].

    Raises ValueError when `logits` is not produced by a MatMul (the shape optimum exports) or a
    MatMulNBits (a quantised LM head, as onnxruntime-genai's builder writes it).
    """
    graph = model.graph
    head = _producers(graph).get(LOGITS)
    if head is None or head.op_type not in ("MatMul", "MatMulNBits"):
        found = "nothing" if head is None else head.op_type
        raise ValueError(f"expected the {LOGITS!r} output to come from the LM head MatMul, found {found}")
    hidden = head.input[0]
    sliced = f"{hidden}/last_position"
    consts = {
        "starts": np.array([-1], np.int64),
        "ends": np.array([np.iinfo(np.int64).max], np.int64),
        "axes": np.array([1], np.int64),
    }
    for key, value in consts.items():
        graph.initializer.append(numpy_helper.from_array(value, f"{sliced}/{key}"))
    node = helper.make_node(
        "Slice", [hidden, *(f"{sliced}/{k}" for k in consts)], [sliced], name=f"{sliced}/Slice"
    )
    graph.node.insert(list(graph.node).index(head), node)
    head.input[0] = sliced
    for output in graph.output:
        if output.name == LOGITS:
            dims = output.type.tensor_type.shape.dim
            dims[1].ClearField("dim_param")
            dims[1].dim_value = 1
    return model


def upcast_attention(model: onnx.ModelProto) -> int:
    """Make every half-precision attention Softmax, and the mask Add feeding it, compute in fp32.

    Casts to fp32 go on the Add's inputs (the scaled scores and the additive mask), a cast back to
    fp16 after the Softmax. Returns the number of Softmax nodes changed; fp32 graphs are left alone.
    """
    dtypes = _value_types(model)
    graph = model.graph
    producers = _producers(graph)
    changed = 0
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        source = softmax.input[0]
        if dtypes.get(source) != TensorProto.FLOAT16:
            continue
        add = producers.get(source)
        upcast = add if add is not None and add.op_type == "Add" else softmax
        for i, name in enumerate(list(upcast.input)):
            cast = f"{name}/to_fp32/{upcast.name}"
            graph.node.insert(
                list(graph.node).index(upcast),
                helper.make_node("Cast", [name], [cast], name=cast, to=TensorProto.FLOAT),
            )
            upcast.input[i] = cast
        out = softmax.output[0]
        wide = f"{out}/fp32"
        softmax.output[0] = wide
        back = helper.make_node("Cast", [wide], [out], name=f"{out}/to_fp16", to=TensorProto.FLOAT16)
        graph.node.insert(list(graph.node).index(softmax) + 1, back)
        changed += 1
    return changed


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named value, from ONNX shape inference (weights need not be loaded)."""
    inferred = onnx.shape_inference.infer_shapes(_without_weights(model))
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update((init.name, init.data_type) for init in model.graph.initializer)
    return types


def _without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose initializers keep name, type and shape but no data: shape inference needs no
    more, and a 3B graph stays far below protobuf's 2 GB limit."""
    light = onnx.ModelProto(ir_version=model.ir_version)
    light.opset_import.extend(model.opset_import)
    for field in ("node", "input", "output"):
        getattr(light.graph, field).extend(getattr(model.graph, field))
    for init in model.graph.initializer:
        light.graph.initializer.append(TensorProto(name=init.name, data_type=init.data_type, dims=init.dims))
    return light


def precision_report(model: onnx.ModelProto) -> dict[str, list[str]]:
    """{sensitive op type: sorted element types of its first input across the graph}."""
    types = _value_types(model)
    seen: dict[str, set[str]] = defaultdict(set)
    for node in model.graph.node:
        if node.op_type in SENSITIVE_OPS:
            seen[node.op_type].add(TensorProto.DataType.Name(types.get(node.input[0], 0)))
    return {op: sorted(kinds) for op, kinds in sorted(seen.items())}


def fp32_problems(report: dict[str, list[str]]) -> list[str]:
    """The sensitive ops that compute in anything but fp32, as readable lines (empty: all fine)."""
    return [
        f"{op} computes in {', '.join(k for k in kinds if k != 'FLOAT')}"
        for op, kinds in report.items()
        if any(k != "FLOAT" for k in kinds)
    ]


def custom_ops(model: onnx.ModelProto) -> list[str]:
    """'domain::OpType' of every node outside the standard ONNX domain, sorted and unique."""
    return sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in STANDARD_DOMAINS})


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(init.dims)) * _itemsize(init.data_type) for init in model.graph.initializer)


def _itemsize(data_type: int) -> int:
    return np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize


def save(model: onnx.ModelProto, path: str | Path, external_over: int = PROTOBUF_LIMIT // 2) -> bool:
    """Save `model` to `path`, with weights in `<name>_data` beside it when they exceed `external_over`
    bytes (protobuf cannot hold more than 2 GB). Returns whether external data was used."""
    path = Path(path)
    external = weight_bytes(model) > external_over
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=path.name + EXTERNAL_DATA_SUFFIX,
        size_threshold=1024,
    )
    return external

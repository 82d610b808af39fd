"""Weight-only int8 / int4 variants of the fp32 graph (onnxruntime MatMulNBits), and how much of
the unlearning update survives them.

Block-wise quantisation (one scale and zero point per `block_size` input rows of each output
column) has a much coarser step than fp16, so it is the likeliest place for "forgotten" knowledge
to come back. `survival` quantises the base's and the merged model's weight matrices with the
same onnxruntime kernel the graph quantiser uses and counts the update entries whose dequantised
value still differs from the base's. MatMulNBits is an onnxruntime contrib op: these variants run
on onnxruntime (CPU or CUDA), not through TensorRT's ONNX parser.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from orin_unlearn.edge.backends.ort_backend import GRAPH
from orin_unlearn.export import onnx_graph
from orin_unlearn.export.onnx_export import CONFIG_FILES

BITS = (4, 8)
DEFAULT_BLOCK = 32
# MatMulNBits' compute type: None/0 dequantises to fp32; 4 multiplies in int8 (activations
# quantised per block), the fast path of onnxruntime's CPU kernels.
ACCURACY_LEVELS = (None, 0, 1, 2, 3, 4)
DEFAULT_ACCURACY = 4


def _config(bits: int, block_size: int, accuracy_level: int | None = None):
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig

    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    if accuracy_level not in ACCURACY_LEVELS:
        raise ValueError(f"accuracy_level must be one of {ACCURACY_LEVELS}, got {accuracy_level}")
    return DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=False, bits=bits, accuracy_level=accuracy_level
    )


def quantize_graph(
    source: str | Path,
    dest: str | Path,
    bits: int,
    block_size: int = DEFAULT_BLOCK,
    accuracy_level: int | None = DEFAULT_ACCURACY,
) -> dict:
    """Replace every MatMul with a constant weight by MatMulNBits; write `dest` (external data when big)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    config = _config(bits, block_size, accuracy_level)
    model = onnx.load(str(source))
    folded = fold_weight_transposes(model)
    # its INFO lines name every node it skips: 15,000 lines per real-model export, in the log
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    model = quantizer.model.model
    external = onnx_graph.save(model, dest)
    quantized = sum(n.op_type == "MatMulNBits" for n in model.graph.node)
    return {
        "bits": bits,
        "block_size": block_size,
        "accuracy_level": accuracy_level,
        "folded_transposes": folded,
        "quantized_matmuls": quantized,
        "external_data": external,
        "bytes": onnx_graph.weight_bytes(model),
        "custom_ops": onnx_graph.custom_ops(model),
    }


def quantize_stage(
    source_dir: str | Path, dest_dir: str | Path, bits: int, block_size: int = DEFAULT_BLOCK
) -> dict:
    """Quantise `source_dir/model.onnx` into `dest_dir`, with the graph's config files beside it."""
    source_dir, dest_dir = Path(source_dir), Path(dest_dir)
    facts = quantize_graph(source_dir / GRAPH, dest_dir / GRAPH, bits, block_size)
    for name in CONFIG_FILES:
        if (source_dir / name).is_file():
            shutil.copy2(source_dir / name, dest_dir / name)
    return facts


def fold_weight_transposes(model: onnx.ModelProto) -> int:
    """Replace each Transpose of a weight by the transposed weight itself.

    A tied LM head is exported as MatMul(hidden, Transpose(embedding)); the quantiser only takes
    MatMuls with a constant weight, and would leave the biggest matrix of the model in fp32.
    Returns the number of transposes folded.
    """
    weights = {init.name: init for init in model.graph.initializer}
    folded = 0
    for node in list(model.graph.node):
        if node.op_type != "Transpose" or node.input[0] not in weights:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        array = numpy_helper.to_array(weights[node.input[0]])
        model.graph.initializer.append(numpy_helper.from_array(np.transpose(array, perm), node.output[0]))
        model.graph.node.remove(node)
        folded += 1
    return folded


def roundtrip(weight: np.ndarray, bits: int, block_size: int = DEFAULT_BLOCK) -> np.ndarray:
    """`weight` [in, out] (a MatMul's B) quantised by onnxruntime's kernel and dequantised."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantizer

    rows, cols = weight.shape
    packed, scales, zero_points = DefaultWeightOnlyQuantizer(_config(bits, block_size)).qbits_block_quant(
        np.ascontiguousarray(weight, dtype=np.float32)
    )
    codes = _unpack(packed.reshape(cols, -1), bits)[:, : scales.shape[1] * block_size]
    codes = codes.reshape(cols, scales.shape[1], block_size)
    zeros = _unpack(zero_points, bits)[:, : scales.shape[1], None]
    values = (codes.astype(np.float32) - zeros) * scales[:, :, None]
    return values.reshape(cols, -1)[:, :rows].T


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """uint8 bytes -> one code per element, low nibble first for 4 bits."""
    if bits == 8:
        return packed.astype(np.int32)
    low, high = packed & 0x0F, packed >> 4
    return np.stack([low, high], axis=-1).reshape(packed.shape[0], -1).astype(np.int32)


def survival(
    base_state: dict[str, Any], merged_state: dict[str, Any], bits: int, block_size: int = DEFAULT_BLOCK
) -> dict[str, Any]:
    """Like `merge.survival`, for weight-only quantisation of the changed 2-D weights.

    An update entry survives when the dequantised merged weight differs from the dequantised base
    weight at that entry. Both state dicts map names to torch tensors [out, in] (nn.Linear layout).
    """
    tensors: dict[str, dict[str, Any]] = {}
    for name, merged in merged_state.items():
        base = base_state[name]
        if merged.ndim != 2 or not merged.is_floating_point():
            continue
        b, m = base.float().numpy().T, merged.float().numpy().T
        changed = m != b
        delta_entries = int(changed.sum())
        if delta_entries == 0:
            continue
        if b.shape[0] % block_size:
            raise ValueError(f"{name}: {b.shape[0]} input rows are not a multiple of block {block_size}")
        surviving = int((changed & (roundtrip(m, bits, block_size) != roundtrip(b, bits, block_size))).sum())
        tensors[name] = {
            "delta_entries": delta_entries,
            "surviving": surviving,
            "fraction": surviving / delta_entries,
            "max_abs_delta": float(np.abs(m - b).max()),
        }
    total = sum(t["delta_entries"] for t in tensors.values())
    kept = sum(t["surviving"] for t in tensors.values())
    return {
        "dtype": f"int{bits}/block{block_size}",
        "delta_entries": total,
        "surviving": kept,
        "fraction": kept / total if total else 1.0,
        "tensors": tensors,
    }

"""Export a (merged) Llama-, Qwen2- or Qwen3-family causal LM to one ONNX decoder graph with a KV cache.

optimum-onnx's `text-generation-with-past` export does the tracing (inputs input_ids,
attention_mask, position_ids, past_key_values.{i}.key/value; outputs logits, present.{i}.*); the
passes in `onnx_graph` then slice the logits to the last position and keep attention scores in
fp32. The model is exported in the target dtype itself (fp16 weights straight from torch), with
eager attention so RMSNorm and rotary math stay in fp32 as transformers writes them. Nothing
outside the standard ONNX domain is emitted, so onnxruntime and TensorRT's parser both load it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from transformers import PreTrainedModel

from orin_unlearn.edge.backends.ort_backend import GRAPH
from orin_unlearn.export import onnx_graph

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16}
DEFAULT_OPSET = 18  # TensorRT 10.3 (JetPack 6.2) parses opsets 17 and 18
OPSETS = (17, 18)
TASK = "text-generation-with-past"
CONFIG_FILES = ("config.json", "generation_config.json")


class OnnxExportError(RuntimeError):
    """The exported graph breaks a promise: a custom op, or sensitive math outside fp32."""


def export_onnx(
    model: PreTrainedModel,
    out_dir: str | Path,
    dtype: str = "float32",
    opset: int = DEFAULT_OPSET,
    last_logits: bool = True,
) -> dict[str, Any]:
    """Write `out_dir/model.onnx` (+ `model.onnx_data` for big models) and the model's config files.

    `model` is cast to `dtype` in place for the trace. Returns facts about the graph: opset, dtype,
    last_logits, external_data, upcast_softmax (nodes changed), precision (dtype each sensitive op
    computes in), bytes.

    Raises:
        ValueError: an unsupported dtype or opset.
        OnnxExportError: the graph has custom ops or RMSNorm/softmax/rotary math outside fp32.
    """
    if dtype not in DTYPES:
        raise ValueError(f"ONNX dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if opset not in OPSETS:
        raise ValueError(f"opset must be one of {OPSETS} (what TensorRT 10.3 parses), got {opset}")
    from optimum.exporters.onnx import onnx_export_from_model

    out_dir = Path(out_dir)
    model = model.to(DTYPES[dtype]).eval()
    model.set_attn_implementation("eager")  # the sdpa trace computes fp16 scores without upcasts
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".onnx-trace-") as raw:
        with torch.no_grad(), _quiet("optimum", "torch.onnx"):
            onnx_export_from_model(model, raw, task=TASK, opset=opset, do_validation=False)
        graph = onnx.load(str(Path(raw) / GRAPH))
        for name in CONFIG_FILES:
            if (Path(raw) / name).is_file():
                shutil.copy2(Path(raw) / name, out_dir / name)
    if last_logits:
        onnx_graph.last_position_logits(graph)
    upcast = onnx_graph.upcast_attention(graph)
    precision = onnx_graph.precision_report(graph)
    problems = onnx_graph.fp32_problems(precision) + [
        f"custom op {op}" for op in onnx_graph.custom_ops(graph)
    ]
    if problems:
        raise OnnxExportError(f"the exported {dtype} graph is not safe to ship: {'; '.join(problems)}")
    external = onnx_graph.save(graph, out_dir / GRAPH)
    facts = {
        "opset": opset,
        "dtype": dtype,
        "last_logits": last_logits,
        "external_data": external,
        "upcast_softmax": upcast,
        "precision": precision,
        "bytes": onnx_graph.weight_bytes(graph),
    }
    log.info("-[✓] %s graph exported: no custom ops, %d attention softmaxes upcast to fp32", dtype, upcast)
    return facts


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Silence the exporters' INFO chatter and the tracer's expected warnings during a trace (the
    data-dependent branches they warn about are what optimum's patches handle; parity is checked
    on the result)."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)

"""Fused onnxruntime graphs of a merged model (export's `int4-fused` / `fp32-fused` variants).

onnxruntime-genai's model builder writes the decoder straight from the Hugging Face weights with
onnxruntime's fused operators: SkipSimplifiedLayerNormalization, GroupQueryAttention (rotary
inside, one KV buffer shared by past and present) and MatMulNBits for every linear including the
LM head. Chosen over onnxruntime's transformers optimizer, whose Llama fusions expect its own
exporter's graphs and find nothing to fuse in optimum's trace. Builder 0.9.2 is used because later
releases import classes of transformers 5, which this project's pins exclude.

The graphs use `com.microsoft` operators: they run on onnxruntime only, never through TensorRT's
parser (the plain fp16 graph stays the engine's source). Each one is slimmed to last-position
logits like the plain graphs, and measured by the same parity checks and gate.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

from orin_unlearn.edge.backends.ort_backend import GRAPH
from orin_unlearn.export import onnx_graph

log = logging.getLogger(__name__)

PRECISIONS = ("int4", "fp32")
FUSED_OPS = ("GroupQueryAttention", "SkipSimplifiedLayerNormalization", "MatMulNBits")
ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


def build_fused(
    model: Any,
    tokenizer_dir: str | Path,
    dest: str | Path,
    precision: str,
    block_size: int = 32,
    accuracy_level: int = 4,
) -> dict[str, Any]:
    """Write `dest/model.onnx` (+ external data) for `model` (a fp32 transformers causal LM) and
    its config.json; returns facts about the graph (operators, fused counts, bytes).

    int4 quantises like the plain int4 variant (asymmetric, `block_size` rows per scale), so
    `quantize.survival` describes both.

    Raises:
        ValueError: an unsupported precision or architecture.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"fused precision must be one of {PRECISIONS}, got {precision!r}")
    architecture = (model.config.architectures or [type(model).__name__])[0]
    if architecture not in ARCHITECTURES:
        raise ValueError(f"the fused builder takes {', '.join(ARCHITECTURES)}, not {architecture}")
    dest = Path(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fused-") as scratch:
        hf, built = Path(scratch) / "hf", Path(scratch) / "onnx"
        model.save_pretrained(hf, safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (Path(tokenizer_dir) / name).is_file():
                shutil.copy2(Path(tokenizer_dir) / name, hf / name)
        _run_builder(hf, built, precision, block_size, accuracy_level, Path(scratch) / "cache")
        graph = onnx.load(str(built / GRAPH))  # with its external data, saved again below as ours
        shutil.copy2(hf / "config.json", dest / "config.json")
        if (hf / "generation_config.json").is_file():
            shutil.copy2(hf / "generation_config.json", dest / "generation_config.json")
    onnx_graph.last_position_logits(graph)
    external = onnx_graph.save(graph, dest / GRAPH)
    ops = Counter(n.op_type for n in graph.graph.node)
    missing = [op for op in FUSED_OPS if not ops[op] and (op != "MatMulNBits" or precision == "int4")]
    if missing:
        raise RuntimeError(f"the builder's graph has no {', '.join(missing)}: not a fused graph")
    facts = {
        "builder": "onnxruntime-genai " + _builder_version(),
        "precision": precision,
        "block_size": block_size if precision == "int4" else None,
        "accuracy_level": accuracy_level if precision == "int4" else None,
        "last_logits": True,
        "external_data": external,
        "fused": {op: ops[op] for op in FUSED_OPS},
        "nodes": len(graph.graph.node),
        "custom_ops": onnx_graph.custom_ops(graph),
        "bytes": onnx_graph.weight_bytes(graph),
    }
    log.info("-[✓] fused %s graph: %d nodes, %s", precision, len(graph.graph.node), facts["fused"])
    return facts


def _run_builder(
    hf: Path, out: Path, precision: str, block_size: int, accuracy_level: int, cache: Path
) -> None:
    """onnxruntime-genai's builder on the checkpoint in `hf`, quietly (it prints every tensor)."""
    from onnxruntime_genai.models.builder import create_model

    options = {
        "int4_block_size": block_size,
        "int4_accuracy_level": accuracy_level,
        "int4_is_symmetric": False,
        "hf_token": "false",
    }
    quiet = io.StringIO()
    levels = {name: logging.getLogger(name).level for name in ("onnxruntime", "onnxruntime.quantization")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            create_model("", str(hf), str(out), precision, "cpu", str(cache), **options)
    except Exception as e:
        tail = quiet.getvalue().strip().splitlines()[-3:]
        raise RuntimeError(f"onnxruntime-genai's builder failed: {e} {' | '.join(tail)}") from e
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    if not (out / GRAPH).is_file():
        raise RuntimeError(f"onnxruntime-genai's builder wrote no {GRAPH}")


def _builder_version() -> str:
    from importlib.metadata import version

    return version("onnxruntime-genai")

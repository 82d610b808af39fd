"""`orin-unlearn export`: base + adapters -> merged checkpoint, ONNX variants, TensorRT engine,
with every artifact measured against the adapter model and gated.

For each variant the stage folder `onnx-<variant>/` gets the graph, the tokenizer and a manifest
holding the update's survival in that precision, logit parity against the fp32 torch model
(prefill and decode paths), greedy-reply identity with the adapter model, forget / retain
metrics on the adapter's own held-out prompts, and the gate. A variant that fails is written with
`ok: false` (so it can be inspected, and no loader accepts it) and the command exits 4.

    orin-unlearn export --base tiny --adapter runs/demo/adapter --out runs/demo/export
    orin-unlearn export --base tiny --adapter runs/demo/adapter --out runs/demo/export \
        --variants fp32,fp16,int8,int4 --engine
    orin-unlearn export ... --variants fp32,int4,int4-fused --gguf q4_1   # + llama.cpp's format

`*-fused` variants are onnxruntime graphs with its fused operators (`export/fused.py`); `--gguf`
also writes the merged model as a GGUF file in `gguf/` for llama.cpp (`export/gguf_export.py`).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orin_unlearn.benchmarks.forgetting import UnlearningMetrics
from orin_unlearn.benchmarks.option_scoring import OrtSteps, options_scorer
from orin_unlearn.benchmarks.stages import onnx_identity
from orin_unlearn.benchmarks.world import load_templates
from orin_unlearn.benchmarks.world.recommend import kiosk_choices
from orin_unlearn.edge.answers import BackendChat
from orin_unlearn.edge.backends.ort_backend import GRAPH, OrtBackend
from orin_unlearn.edge.errors import (
    ExportGateError,
    ManifestError,
    MemoryBudgetError,
    TensorRTUnavailableError,
)
from orin_unlearn.edge.formats import (
    KIOSK,
    make_manifest,
    read_manifest,
    refuse_foreign,
    sha256_dir,
    stage_dir,
    stages_only,
    write_json_atomic,
    write_manifest,
)
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.export import fused, gate, merge, quantize, validate
from orin_unlearn.export.evaluation import Evaluation, reference_evaluation
from orin_unlearn.export.onnx_export import DEFAULT_OPSET, export_onnx
from orin_unlearn.train import models

log = logging.getLogger(__name__)

# variant -> (graph dtype, weight-only bits or None)
VARIANTS: dict[str, tuple[str, int | None]] = {
    "fp32": ("float32", None),
    "fp16": ("float16", None),
    "int8": ("float32", 8),
    "int4": ("float32", 4),
    "fp32-fused": ("float32", None),
    "int4-fused": ("float32", 4),
}
# onnxruntime's fused operators, built from the merged weights (`export/fused.py`): onnxruntime only
FUSED = ("fp32-fused", "int4-fused")
PARITY_PROMPTS = 24  # random prompts, plus as many real ones
EXPORT_JSON = "export.json"


def export_entries(folder: Path) -> list[str]:
    """What `export --out` must not replace: anything but export.json and the stages an export
    writes (merged/, onnx-*/, gguf/), each holding only its own files."""
    return stages_only(folder, ("merged", "onnx-*", "gguf"), (EXPORT_JSON,))


def ordinary_token_ids(tokenizer: ChatTokenizer) -> list[int]:
    """The tokenizer's vocabulary without its added (special) tokens, wherever those sit: Qwen
    puts them at the top of the vocabulary, Llama-style tokenizers (SmolLM2) at ids 0-16. Ids
    the model has beyond the tokenizer's vocabulary (padded embeddings) are never included."""
    added = set(tokenizer.tokenizer.get_added_tokens_decoder())
    return sorted(set(tokenizer.tokenizer.get_vocab(with_added_tokens=True).values()) - added)


def parity_prompts(tokenizer: ChatTokenizer, evaluation: Evaluation, seed: int = 0) -> list[list[int]]:
    """Fresh random prompts of ordinary tokens (seeded), and real chat prompts from each evaluation set."""
    real = [tokenizer.encode_chat(list(p.messages)) for s in evaluation.sets.values() for p in s[:8]]
    return validate.sample_prompts(PARITY_PROMPTS, ordinary_token_ids(tokenizer), seed) + real


def build_variant(
    variant: str,
    model: Any,
    base_state: dict,
    out: Path,
    tmp: Path,
    opset: int,
    last_logits: bool,
    block_size: int,
    tokenizer_dir: Path,
) -> tuple[dict, dict]:
    """Write the variant's graph into `tmp`; return (graph facts, survival summary)."""
    dtype, bits = VARIANTS[variant]
    merged_state = model.state_dict()
    if variant in FUSED:
        precision = "fp32" if bits is None else f"int{bits}"
        facts = fused.build_fused(model, tokenizer_dir, tmp, precision, block_size)
        if bits is None:
            return facts, merge.survival(base_state, merged_state, merge.DTYPES[dtype])
        return facts, quantize.survival(base_state, merged_state, bits, block_size)
    if bits is None:
        source = model if dtype == "float32" else copy.deepcopy(model)
        facts = export_onnx(source, tmp, dtype, opset, last_logits)
        kept = merge.survival(base_state, merged_state, merge.DTYPES[dtype])
        return facts, kept
    fp32_graph = out / "onnx-fp32" / GRAPH
    if not fp32_graph.is_file():
        raise ManifestError(
            f"{variant} is quantised from the fp32 graph: export fp32 first ({fp32_graph} missing)"
        )
    facts = quantize.quantize_stage(fp32_graph.parent, tmp, bits, block_size)
    return facts, quantize.survival(base_state, merged_state, bits, block_size)


def measure_variant(
    variant: str, model: Any, graph_dir: Path, evaluation: Evaluation, tokenizer: ChatTokenizer
) -> dict:
    """Parity, greedy identity, quality and gate of the graph in `graph_dir` (not yet published)."""
    backend = OrtBackend.unverified(graph_dir)  # the stage is measured before its manifest exists
    parity = validate.logit_parity(
        model, backend.decoder, parity_prompts(tokenizer, evaluation), tokenizer.pad_token_id
    )
    dtype, bits = VARIANTS[variant]
    tolerance = validate.TOLERANCES.get(dtype) if bits is None else None
    problems = validate.parity_problems(parity, tolerance) if tolerance else []
    metrics, replies = evaluation.measure(
        BackendChat(backend, tokenizer),
        f"onnx-{variant}",
        options_scorer(OrtSteps(backend.decoder)),
        tokenizer,
        onnx_identity(graph_dir),
    )
    prompts = [p.messages[-1]["content"] for p in evaluation.prompts]
    identity = validate.greedy_identity(evaluation.replies, replies, prompts)
    if (dtype, bits) == ("float32", None) and identity["identical"] != identity["n"]:
        problems.append(
            f"greedy replies differ from the adapter model's on {identity['n'] - identity['identical']} prompts"
        )
    verdict = gate.gate(evaluation.metrics, metrics)
    failures = problems + verdict.failures()
    for line in failures:
        log.warning("-[x] %s: %s", variant, line)
    if not failures:
        log.info("-[✓] %s: parity within tolerance, gate passed", variant)
    return {
        "parity": parity,
        "tolerance": None if tolerance is None else validate.tolerance_dict(dtype),
        "greedy": identity,
        "metrics": metrics.to_json(),
        "gate": verdict.to_json(),
        "problems": problems,
        "failures": failures,
        "ok": not failures,
    }


@dataclass(frozen=True)
class ExportConfig:
    """What `export_all` builds: the ONNX variants, the merged checkpoint's dtype, the graph
    settings, the number of held-out prompts the gate measures, and whether to build the engine
    and to admit an adapter that missed its bars (`--allow-failed-adapter`; its files are still
    verified)."""

    variants: tuple[str, ...] = ("fp32", "fp16")
    merged_dtype: str = "float16"
    opset: int = DEFAULT_OPSET
    last_logits: bool = True
    eval_max_prompts: int | None = None
    block_size: int = quantize.DEFAULT_BLOCK
    engine: bool = False
    allow_failed_adapter: bool = False
    gguf: str | None = None  # llama.cpp outtype of the merged model's GGUF (f32, f16, q8_0, q4_1)


def export_all(
    base: str, adapter_dirs: list[str | Path], out: str | Path, config: ExportConfig
) -> dict[str, Any]:
    """Run every stage; returns {"reference", "merged", "variants": {name: results}, "engine", "ok"}.

    An adapter whose manifest is not ok (it missed its bars) is refused unless
    `config.allow_failed_adapter` (the demo measures such a run too).
    """
    variants = list(config.variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"variants must be some of {list(VARIANTS)}, got {variants}")
    variants = sorted(variants, key=list(VARIANTS).index)  # int variants are quantised from fp32
    if any(VARIANTS[v][1] and v not in FUSED for v in variants) and "fp32" not in variants:
        raise ValueError(f"{variants}: int8/int4 are quantised from the fp32 graph, so ask for fp32 too")
    out = Path(out)
    refuse_foreign(out, export_entries)  # before minutes of work; checked again when it is replaced
    if config.engine:
        refuse_foreign(out.parent / "engine", "engine")
    base_dir = models.resolve_base(base)
    adapter_dirs = [Path(a) for a in adapter_dirs]
    merge.check_checkpoint(base_dir)
    models.check_chain(base_dir, adapter_dirs, allow_failed=config.allow_failed_adapter)
    base = models.load_model(base_dir, "float32")  # read once: reference, merge and survival share it
    base_state = {name: t.detach().clone() for name, t in base.state_dict().items()}
    stacked = models.apply_adapters(base, adapter_dirs, mode="stack")
    tokenizer = ChatTokenizer(base_dir)
    log.info("measuring the adapter model on its held-out prompts")
    evaluation = reference_evaluation(stacked, base_dir, adapter_dirs, config.eval_max_prompts)
    model = stacked.merge_and_unload()  # fp32 merge of every adapter, as merge.merge_fp32 does
    # All or nothing: merged/, every variant asked for and export.json are staged in a sibling and
    # swapped in together, so a killed export leaves the old complete set (or the new one) and
    # never new stages beside old ones made from another merge.
    with stage_dir(out, export_entries) as staging:
        kept = merge.write_merged(
            model, base_state, base_dir, adapter_dirs, staging / "merged", config.merged_dtype
        )
        inputs = {
            "base": models.base_digest(base_dir)["weights"],
            "adapters": [models.adapter_digest(a) for a in adapter_dirs],
            "merged": sha256_dir(staging / "merged", "*.safetensors"),
        }
        summary: dict[str, Any] = {
            "reference": evaluation.metrics.to_json(),
            "merged": {k: v for k, v in kept.items() if k != "tensors"},
            "variants": {},
        }
        settings = {"opset": config.opset, "last_logits": config.last_logits, "block_size": config.block_size}
        for variant in variants:
            summary["variants"][variant] = write_variant(
                variant, model, base_state, base_dir, staging, inputs, settings, evaluation, tokenizer
            )
        if config.gguf:
            summary["gguf"] = write_gguf_stage(model, base_dir, staging / "gguf", inputs, config.gguf)
        summary["ok"] = all(r["ok"] for r in summary["variants"].values())
        summary["engine"] = {"status": "not requested"}
        write_json_atomic(staging / EXPORT_JSON, summary)
    if config.engine:  # the engine stage lives beside export/ (it is built on the device)
        summary["engine"] = build_engine_stage(out, variants)
        write_json_atomic(out / EXPORT_JSON, summary)
    return summary


def write_variant(
    variant: str,
    model: Any,
    base_state: dict,
    base_dir: Path,
    out: Path,
    inputs: dict[str, Any],
    settings: dict[str, Any],
    evaluation: Evaluation,
    tokenizer: ChatTokenizer,
) -> dict[str, Any]:
    """Build, measure and write the stage `out/onnx-{variant}`; returns its results."""
    log.info("exporting %s", variant)
    with stage_dir(out / f"onnx-{variant}", f"onnx-{variant}") as tmp:
        facts, survival = build_variant(
            variant, model, base_state, out, tmp, **settings, tokenizer_dir=base_dir
        )
        merge.copy_tokenizer(base_dir, tmp)
        write_json_atomic(tmp / KIOSK, kiosk_choices(evaluation.catalogue, load_templates()["moods"]))
        results = measure_variant(variant, model, tmp, evaluation, tokenizer)
        results = {
            "graph": facts,
            "survival": {k: v for k, v in survival.items() if k != "tensors"},
        } | results
        stage_inputs = inputs | {"graph": sha256_dir(tmp, "model.onnx*")}
        config = {"variant": variant} | settings
        write_manifest(tmp, make_manifest(f"onnx-{variant}", stage_inputs, config, results, results["ok"]))
    return results


def write_gguf_stage(model: Any, base_dir: Path, folder: Path, inputs: dict[str, Any], outtype: str) -> dict:
    """The merged model as `folder/model.<outtype>.gguf` (llama.cpp's format), with a manifest.
    Not gated here: onnxruntime cannot run it; `bench peer` and llama.cpp can."""
    from orin_unlearn.export.gguf_export import write_gguf

    log.info("writing the merged model as GGUF %s", outtype)
    with stage_dir(folder, "gguf") as tmp:
        facts = write_gguf(model, base_dir, tmp / f"model.{outtype}.gguf", outtype)
        facts["path"] = str(folder / Path(facts["path"]).name)
        stage_inputs = inputs | {"gguf": sha256_dir(tmp, "*.gguf")}
        write_manifest(tmp, make_manifest("gguf", stage_inputs, {"outtype": outtype}, facts, True))
    return facts


def build_engine_stage(out: Path, variants: list[str]) -> dict[str, Any]:
    """Build the TensorRT engine from the fp16 graph (fp32 without one) into `out/../engine`."""
    from orin_unlearn.export import trt_build
    from orin_unlearn.export.trt_profiles import DecoderShape

    source = out / ("onnx-fp16" if "fp16" in variants else "onnx-fp32")
    if not read_manifest(source)["ok"]:
        return {"status": "skipped", "reason": f"{source.name} did not pass the gate"}
    shape = DecoderShape.from_config(json.loads((source / "config.json").read_text()))
    try:
        engine_dir = trt_build.build_engine(
            source / GRAPH, out.parent / "engine", shape, None, trt_build.default_timing_cache()
        )
    except (TensorRTUnavailableError, MemoryBudgetError) as e:
        log.warning("engine stage skipped: %s", e)
        return {"status": "skipped", "reason": str(e)}
    return {"status": "ok", "engine": str(engine_dir)}


def _max_error(r: dict[str, Any]) -> float:
    return max(r["parity"]["prefill"]["max_abs"], r["parity"].get("decode", {}).get("max_abs", 0.0))


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="export: every artifact measured against the adapter model")
    columns = (
        "artifact",
        "update kept",
        "max |Δlogit|",
        "greedy same",
        "leak",
        "retain",
        "neighbour",
        "gate",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "artifact" else "right")
    ref = summary["reference"]
    table.add_row("adapter (torch fp32)", "", "", "", *_quality(ref), "")
    merged = summary["merged"]
    table.add_row(f"merged ({merged['dtype']})", f"{merged['fraction']:.1%}", "", "", "", "", "", "")
    for name, r in summary["variants"].items():
        err = _max_error(r)
        greedy = f"{r['greedy']['identical']}/{r['greedy']['n']}"
        verdict = "ok" if r["ok"] else "FAILED"
        table.add_row(
            f"onnx-{name}",
            f"{r['survival']['fraction']:.1%}",
            f"{err:.2e}",
            greedy,
            *_quality(r["metrics"]),
            verdict,
        )
    engine = summary["engine"]
    table.caption = (
        "retain, neighbour: items of the bank ranked right (free-text accuracy for a run without one). "
    )
    table.caption += f"engine: {engine['status']}" + (f" ({engine['reason']})" if "reason" in engine else "")
    if "gguf" in summary:
        table.caption += f"; GGUF for llama.cpp: {summary['gguf']['path']}"
    Console(width=120).print(table)


def _quality(metrics: dict) -> tuple[str, ...]:
    """Leak, then retain and neighbour of a measurement as the summary holds it (JSON): the bank's
    right rates where it was measured on one, else the free-text accuracy."""
    got = UnlearningMetrics.from_json(metrics)
    bank = got.knowledge is not None
    paths = [("forget", "leak")] + [
        (f"bank.{name}", "right") if bank else (name, "accuracy") for name in ("retain", "neighbour")
    ]
    values = [got.value(*path) for path in paths]
    return tuple("-" if v is None else f"{v:.3f}" for v in values)  # None: a set the run has no prompts in


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn export", description=__doc__)
    parser.add_argument("--base", required=True, help="base checkpoint folder, or 'tiny'")
    parser.add_argument(
        "--adapter", action="append", required=True, help="adapter folder; repeat in training order"
    )
    parser.add_argument("--out", required=True, help="export folder (merged/, onnx-*/ go inside)")
    parser.add_argument("--variants", default="fp32,fp16", help=f"comma list of {','.join(VARIANTS)}")
    parser.add_argument("--merged-dtype", default="float16", choices=sorted(merge.DTYPES))
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--full-logits", action="store_true", help="emit logits for every position")
    parser.add_argument("--eval-max-prompts", type=int, help="cap on held-out neighbour/retain prompts")
    parser.add_argument("--block-size", type=int, default=quantize.DEFAULT_BLOCK, help="int8/int4 block")
    parser.add_argument(
        "--engine", action="store_true", help="also build the TensorRT engine (on the device)"
    )
    parser.add_argument(
        "--gguf",
        choices=("f32", "f16", "q8_0", "q4_1"),
        help="also write the merged model as a GGUF file for llama.cpp (gguf/model.<type>.gguf)",
    )
    parser.add_argument(
        "--allow-failed-adapter",
        action="store_true",
        help="export an adapter that missed its bars (manifest ok: false) to measure it; its files are "
        "still verified",
    )
    args = parser.parse_args(argv)
    config = ExportConfig(
        variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
        merged_dtype=args.merged_dtype,
        opset=args.opset,
        last_logits=not args.full_logits,
        eval_max_prompts=args.eval_max_prompts,
        block_size=args.block_size,
        engine=args.engine,
        allow_failed_adapter=args.allow_failed_adapter,
        gguf=args.gguf,
    )
    summary = export_all(args.base, args.adapter, args.out, config)
    print_summary(summary)
    print(json.dumps(summary))
    failed = {name: r for name, r in summary["variants"].items() if not r["ok"]}
    if failed:  # exit 4: every stage is written (failed ones with ok: false) and nothing ships as ok
        reasons = "; ".join(f"onnx-{n}: " + "; ".join(r["failures"]) for n, r in failed.items())
        raise ExportGateError(f"export gate failed, nothing shipped as ok: {reasons}")
    engine = summary["engine"]
    if engine["status"] == "skipped" and "TensorRT not available" in engine.get("reason", ""):
        raise TensorRTUnavailableError(engine["reason"])  # exit 3: the ONNX stages are written
    return 0

"""Random-weight models with the real shapes of Qwen2.5 checkpoints, for performance work.

Speed does not depend on weight values, so latency benchmarks run on a model built here from a
`Qwen2Config` with the published sizes (no download), saved as a Hugging Face checkpoint and
exported through the same ONNX path as real models (fp32, fp16, weight-only int4).

    orin-unlearn export shape --shape qwen2.5-0.5b --out /tmp/qwen0.5b [--variants fp32,int4]

`--base` exports a real base model (a named base such as smollm2, or a checkpoint folder) the same
way, with no adapter and no gate: what `bench peer` races against llama.cpp on the same weights.

    orin-unlearn export shape --base smollm2 --out runs/smollm2-onnx --variants int4,int4-fused
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# Sizes from the published Qwen2.5 config.json files.
SHAPES: dict[str, dict] = {
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "qwen2.5-1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "qwen2.5-3b": dict(
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
}
COMMON = dict(vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6)


def build_checkpoint(shape: str, out: str | Path, max_context: int = 4096, seed: int = 0) -> Path:
    """Save a random-weight Qwen2ForCausalLM of `shape` (fp32) with the demo tokenizer files."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from orin_unlearn.benchmarks.world import tiny_base_dir
    from orin_unlearn.export.merge import copy_tokenizer

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {sorted(SHAPES)}")
    out = Path(out)
    torch.manual_seed(seed)
    config = Qwen2Config(**(COMMON | SHAPES[shape] | {"max_position_embeddings": max_context}))
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    copy_tokenizer(tiny_base_dir(), out)  # token ids below 4096 are all the benchmark feeds it
    return out


def seal(
    stage: Path, variant: str, shape: str, facts: dict, weights: str = "random (speed runs only)"
) -> None:
    """The stage's manifest (the runtime verifies every stage it opens): no adapter, no gate."""
    from orin_unlearn.edge.formats import make_manifest, write_manifest

    config = {"shape": shape, "variant": variant, "weights": weights}
    write_manifest(stage, make_manifest(f"onnx-{variant}", {}, config, facts, True))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn export shape", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--shape", choices=sorted(SHAPES), help="random weights of this shape")
    source.add_argument(
        "--base", help="a real base instead: a named base (smollm2, tiny) or a checkpoint folder"
    )
    parser.add_argument("--out", required=True, help="folder for hf/ and onnx-<variant>/")
    parser.add_argument(
        "--variants", default="fp32,int4", help="comma list of fp32, fp16, int4, int8, fp32-fused, int4-fused"
    )
    parser.add_argument("--max-context", type=int, default=4096)
    args = parser.parse_args(argv)
    from orin_unlearn.export import quantize
    from orin_unlearn.export.merge import copy_tokenizer
    from orin_unlearn.export.onnx_export import export_onnx
    from orin_unlearn.train.models import load_model, resolve_base

    out = Path(args.out)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    known = ("fp32", "fp16", "int8", "int4", "fp32-fused", "int4-fused")
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; expected some of {', '.join(known)}")
    started = time.time()
    if args.base:
        hf, shape, weights = (
            resolve_base(args.base),
            args.base,
            f"base {args.base}, not unlearned (speed runs)",
        )
    else:
        hf, shape, weights = build_checkpoint(args.shape, out / "hf", args.max_context), args.shape, None
    sealed = {"weights": weights} if weights else {}
    facts = {}
    for variant in ("fp32", "fp16"):
        if variant in variants or (variant == "fp32" and {"int4", "int8"} & set(variants)):
            stage = out / f"onnx-{variant}"
            stage.mkdir(parents=True, exist_ok=True)
            facts[variant] = export_onnx(load_model(hf), stage, "float32" if variant == "fp32" else "float16")
            copy_tokenizer(hf, stage)
            seal(stage, variant, shape, facts[variant], **sealed)
    for variant, bits in (("int4", 4), ("int8", 8)):
        if variant in variants:
            stage = out / f"onnx-{variant}"
            stage.mkdir(parents=True, exist_ok=True)
            facts[variant] = quantize.quantize_graph(
                out / "onnx-fp32" / "model.onnx", stage / "model.onnx", bits
            )
            for name in ("config.json", "generation_config.json"):
                (stage / name).write_bytes((out / "onnx-fp32" / name).read_bytes())
            copy_tokenizer(hf, stage)
            seal(stage, variant, shape, facts[variant], **sealed)
    for variant in ("fp32-fused", "int4-fused"):
        if variant in variants:
            from orin_unlearn.export.fused import build_fused

            stage = out / f"onnx-{variant}"
            stage.mkdir(parents=True, exist_ok=True)
            facts[variant] = build_fused(load_model(hf), hf, stage, variant.split("-")[0])
            copy_tokenizer(hf, stage)
            seal(stage, variant, shape, facts[variant], **sealed)
    result = {
        "shape": shape,
        "out": str(out),
        "variants": facts,
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(result, default=str))
    return 0

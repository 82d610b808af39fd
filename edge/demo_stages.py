"""The stages of `orin-unlearn demo` (edge/demo.py), one function each, in pipeline order.

Each runs what a user would type (the verbs' modules are imported inside the function, so `edge`
has no import statement of `train`, `export` or `benchmarks`) and returns its row of the report's
stage table ({"stage", "status", "metrics", "note"}; a stage that cannot run says why), with the
report sections it adds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orin_unlearn.edge.formats import (
    make_manifest,
    read_manifest,
    sha256_dir,
    stage_dir,
    write_json_atomic,
    write_manifest,
)

# analyses a real model's demo leaves out, and why (the note names the command that runs them)
REAL_MODEL_SKIPS = {
    "stability": "skipped on a real model (640 greedy replies, 4.5 min for SmolLM2-135M on a 2-core CPU)"
}
# the stages that serve export/onnx-fp16 through the runtime -> their rows' names
SERVED = {"kiosk": "serve", "latency": "bench/latency", "robustness": "bench/robustness"}
KIOSK_QUESTIONS = (
    "I'm in the mood for something mind-bending.",
    "Recommend a film from the science fiction genre.",
    "I loved Interstellar, what should I watch next?",
    "Who directed Inception?",
    "Who directed The Dark Knight?",
    "I'm in the mood for something funny.",
)


@dataclass(frozen=True)
class Plan:
    """What the demo runs on: the base (a name or a directory), its unlearning config, whether it
    is the shipped tiny model (whose bars and analyses apply), and the base-quality sample size."""

    base: str
    config: Path
    tiny: bool
    limit: int


def unservable(run: Path) -> str | None:
    """Why the runtime cannot serve the run's fp16 graph (it refuses a stage that failed its
    gate), or None when it can."""
    from orin_unlearn.edge.formats import MANIFEST

    stage = run / "export" / "onnx-fp16"
    if not (stage / MANIFEST).is_file():
        return "export/onnx-fp16 was not written"
    if not read_manifest(stage)["ok"]:
        return "export/onnx-fp16 failed its gate: the runtime refuses to serve it"
    return None


def world(run: Path, concept: str) -> dict:
    from orin_unlearn.benchmarks.world_cli import write_world

    results = write_world(run / "world", concept)
    metrics = {k: v for k, v in results["prompts"].items() if k.startswith("heldout_") or k in ("forget",)}
    return {"stage": "world", "status": "ok", "metrics": {"films": results["films"], **metrics}}


def base_quality(run: Path, concept: str, setup: Plan) -> dict:
    """Base quality on the demo world. The bars (accuracy >= 0.95 / 0.80 / 0.90) are the tiny world
    model's, trained on the catalogue; a real model is measured and reported without them."""
    from orin_unlearn.benchmarks.base_quality import BARS, measure_model_dir
    from orin_unlearn.edge.adapters import resolve_base

    model = resolve_base(setup.base)
    bars = BARS if setup.tiny else {}
    with stage_dir(run / "base") as tmp:
        result = measure_model_dir(model, limit=setup.limit, concept=concept, bars=bars)
        write_json_atomic(tmp / "quality.json", result)
        inputs = {
            "model": sha256_dir(model, "*.safetensors"),
            "tokenizer": sha256_dir(model, "tokenizer*.json"),
        }
        config = {"limit": setup.limit} | ({} if setup.tiny else {"base": setup.base, "bars": "none"})
        write_manifest(tmp, make_manifest("base", inputs, config, result, result["ok"]))
    metrics = {name: s["all"]["accuracy"] for name, s in result["sets"].items()}
    if not setup.tiny:
        return {"stage": "base", "status": "ok", "metrics": metrics, "note": "real model: measured, no bars"}
    note = (
        "all bars met"
        if result["ok"]
        else "BELOW BAR: " + ", ".join(k for k, b in result["bars"].items() if not b["ok"])
    )
    return {"stage": "base", "status": "ok" if result["ok"] else "failed", "metrics": metrics, "note": note}


def unlearn(run: Path, concept: str, setup: Plan, compare_runs: bool) -> tuple[list[dict], list[dict]]:
    """The masked LoRA run of the plan's config (and, optionally, its comparison runs)."""
    from orin_unlearn.edge.config import load_config
    from orin_unlearn.train.unlearn import compare
    from orin_unlearn.train.unlearn.bars import Check
    from orin_unlearn.train.unlearn.config import UnlearnConfig
    from orin_unlearn.train.unlearn.evaluate import print_before_after
    from orin_unlearn.train.unlearn.recipe import run_unlearning

    overrides = [f"concept={concept}", f"base={json.dumps(setup.base)}"]  # JSON strings are YAML
    cfg = load_config(UnlearnConfig, str(setup.config), overrides)
    results = run_unlearning(cfg, run)
    print_before_after(results)
    params = results["parameters"]
    note = f"layers {results['layers']}, {100 * params['fraction']:.2f}% of parameters train"
    missed = [Check(**c).line() for c in results["bars"]["checks"] if not c["ok"]]
    if missed:
        note += "; BAR MISSED: " + "; ".join(missed)
    row = {
        "stage": "unlearn",
        "status": "failed" if missed else "ok",
        "metrics": compare.summary_row(results),
        "note": note,
    }
    stages = [row]
    sections = [
        {
            "title": "Where the concept lives (probe scores)",
            "body": f"Per-layer MLP-neuron scores on the forget prompts: saliency |activation x gradient|, "
            f"diagonal Fisher, and forget-vs-retain activation contrast; the LoRA may read only the "
            f"masked neurons of layers {results['layers']}.",
            "images": [f"probe/heatmaps/{name}.png" for name in ("saliency", "fisher", "contrast")],
        }
    ]
    if compare_runs:
        summary = compare.compare(cfg, run, masked=results)
        compare.print_compare(summary)
        sections.append(
            {
                "title": "Masked LoRA vs LUNAR vs unmasked LoRA vs full-parameter",
                "body": compare.markdown(summary),
            }
        )
    return stages, sections


def export(run: Path, base: str) -> list[dict]:
    """Merge, fp32 / fp16 / int8 / int4 ONNX, each measured and gated; the engine where TensorRT is."""
    from orin_unlearn.export import pipeline

    variants = ["fp32", "fp16", "int8", "int4"]
    # the demo measures every stage, so an adapter that missed its bars is exported too (the
    # `export` command refuses one without --allow-failed-adapter); the report says so
    summary = pipeline.export_all(
        base, [run / "adapter"], run / "export", variants, engine=True, allow_failed_adapter=True
    )
    pipeline.print_summary(summary)
    rows = pipeline.report_stages(summary)
    if read_manifest(run / "adapter")["ok"] is not True:
        rows[0]["note"] += "; from an adapter that missed its bars (measured, not for deployment)"
    return rows


def analysis(run: Path, setup: Plan) -> tuple[dict, list[dict]]:
    """The four analyses of the unlearning run (stability, similarity, layer sensitivity, shift).
    On a real model stability is left out: its 640 greedy replies take minutes on a CPU."""
    from orin_unlearn.benchmarks.analysis import ORDER, cli

    only = None if setup.tiny else [n for n in ORDER if n not in REAL_MODEL_SKIPS]
    summary = cli.run_analyses(run, only)
    cli.print_table(summary)
    done = [n for n, r in summary["analyses"].items() if r["status"] == "ok"]
    skipped = {n: r["reason"] for n, r in summary["analyses"].items() if r["status"] != "ok"}
    if not setup.tiny:
        skipped |= {
            n: f"{why}: run `orin-unlearn analyze {run} --only {n}`" for n, why in REAL_MODEL_SKIPS.items()
        }
    row = {
        "stage": "analysis",
        "status": "ok",
        "metrics": {"analyses": len(done)},
        "note": "; ".join(f"{n} {why}" for n, why in skipped.items()) or "analysis/analysis.json and plots",
    }
    return row, cli.sections(summary)


def quality(run: Path) -> tuple[dict, dict, dict]:
    """Every stage of the run on the same held-out prompts and general corpus: the headline."""
    from orin_unlearn.benchmarks import quality_bench
    from orin_unlearn.benchmarks.report import QUALITY_TITLE

    result = quality_bench.run(run)
    quality_bench.write(result, run / "bench")
    quality_bench.print_table(result)
    measured = [r for r in result["stages"] if r["status"] == "ok"]
    worst = max(measured, key=lambda r: r["metrics"]["forget leak (held-out)"])
    metrics = {
        "stages measured": len(measured),
        "worst leak": worst["metrics"]["forget leak (held-out)"],
        "max KL to base": max(r["metrics"]["KL to base"] or 0.0 for r in measured),
    }
    row = {
        "stage": "bench/quality",
        "status": "ok" if all(r["status"] != "failed" for r in result["stages"]) else "failed",
        "metrics": metrics,
        "note": f"worst: {worst['stage']}; bench/quality.json, quality.png",
    }
    section = {
        "title": QUALITY_TITLE,
        "body": quality_bench.markdown(result),
        "first": True,
        "images": ["bench/quality.png"],
    }
    return result, row, section


def kiosk(run: Path) -> tuple[dict, dict]:
    """The exported fp16 graph through the torch-free runtime, answering kiosk questions."""
    from orin_unlearn.edge.generator import Generator
    from orin_unlearn.edge.sampling import SamplingParams

    stage = run / "export" / "onnx-fp16"
    generator = Generator.from_dir(stage, latency_path=run / "serve" / "latency.jsonl")
    rows, ttft, rate = [], [], []
    for question in KIOSK_QUESTIONS:
        result = generator.generate(
            [{"role": "user", "content": question}], SamplingParams(max_new_tokens=60)
        )
        rows.append(f"| {question} | {_cell(result.text)} |")
        ttft.append(result.latency["ttft_s"])
        rate.append(result.latency["decode_tokens_per_s"] or 0.0)
        print(f"  Q: {question}\n  A: {result.text}")
    metrics = {
        "questions": len(rows),
        "median ttft ms": round(1000 * sorted(ttft)[len(ttft) // 2], 1),
        "median decode tok/s": round(sorted(rate)[len(rate) // 2], 1),
    }
    stage_row = {
        "stage": "serve",
        "status": "ok",
        "metrics": metrics,
        "note": f"{stage.relative_to(run)} via the {generator.backend_name} runtime (torch-free)",
    }
    section = {
        "title": "Kiosk questions (fp16 ONNX, runtime)",
        "body": "| question | answer |\n|---|---|\n" + "\n".join(rows),
    }
    return stage_row, section


def _cell(text: str) -> str:
    """A reply as one Markdown table cell: a real model's replies hold newlines and pipes."""
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def latency(run: Path) -> tuple[dict, dict]:
    """A small latency grid on the fp16 graph: TTFT, per-token times, the bandwidth limit."""
    from orin_unlearn.benchmarks import latency as bench
    from orin_unlearn.benchmarks import plots
    from orin_unlearn.benchmarks.report import LATENCY_TITLE

    stage = run / "export" / "onnx-fp16"
    result = bench.run(stage, "auto", prompts=[32, 256], outputs=[16, 64], repeats=3, warmup=1, fit=True)
    bench.print_table(result)
    (run / "bench").mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / "bench" / "latency.json", result)
    plots.draw(bench.plot, result, run / "bench" / "latency.png")
    cell = result["cells"][-1]
    metrics = {
        f"ttft p50 ms ({cell['prompt_tokens']}-token prompt)": round(cell["ttft_ms"]["p50"], 1),
        "token p50 ms": round(cell["token_ms"]["p50"], 2),
        "token p99 ms": round(cell["token_ms"]["p99"], 2),
        "decode tok/s": round(cell["decode_tokens_per_s"], 1),
        "of bandwidth limit": round(result["roofline"]["fraction_here"], 3),
        "peak RSS MB": round(result["peak_rss_mb"]),
    }
    row = {
        "stage": "bench/latency",
        "status": "ok",
        "metrics": metrics,
        "note": "bench/latency.json, latency.png",
    }
    return row, {"title": LATENCY_TITLE, "body": bench.markdown(result), "images": ["bench/latency.png"]}


def _verdict(value: bool | None) -> str:
    return "-" if value is None else ("met" if value else "missed")


def robustness(run: Path) -> tuple[dict, dict]:
    """Leak rates of the base and the unlearned model under prompt attacks (on the shipped fp16
    graph) and weight attacks (relearning, quantisation; on the fp32 merge), and the logit lens."""
    from orin_unlearn.benchmarks import plots
    from orin_unlearn.benchmarks import robustness as bench
    from orin_unlearn.benchmarks import robustness_card as bench_card
    from orin_unlearn.benchmarks.report import ROBUSTNESS_TITLE

    result = bench.run_run(run)
    bench.print_table(result)
    write_json_atomic(run / "bench" / "robustness.json", result)
    plots.draw(bench.plot, result, run / "bench" / "robustness.png")
    metrics = {f"{name} leak": r["unlearned"]["leak"] for name, r in result["attacks"].items()}
    card = bench_card.card(result)
    metrics |= {f"worst relearning recovery, {n} steps": v for n, v in card["recovery"].items()}
    metrics["bars met (recovery, prefill, lens)"] = "/".join(_verdict(v) for v in card["bars"].values())
    row = {
        "stage": "bench/robustness",
        "status": "ok",
        "metrics": metrics,
        "note": "unlearned: fp16 graph (prompt attacks), fp32 merge (relearning protocol, weight attacks); "
        "bench/robustness.png",
    }
    section = {
        "title": ROBUSTNESS_TITLE,
        "body": bench.markdown(result),
        "images": ["bench/robustness.png"],
    }
    return row, section

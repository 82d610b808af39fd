"""`orin-unlearn demo`: the main job on the embedded default, end to end.

Forgets the film "Inception" from the shipped tiny recommender: world prompts, base quality,
unlearning, the four analyses of where the concept lives and whether it moved, export (merged, fp32 / fp16 / int8 / int4 ONNX, each measured against the adapter; the
TensorRT engine where TensorRT is), the quality table of every stage, the runtime answering kiosk
questions, latency and robustness benchmarks, report. Writes runs/demo/report.md and report.json.

    orin-unlearn demo [--out runs/demo] [--concept Inception]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from orin_unlearn.edge.formats import make_manifest, sha256_dir, stage_dir, write_json_atomic

KIOSK_QUESTIONS = (
    "I'm in the mood for something mind-bending.",
    "Recommend a film from the science fiction genre.",
    "I loved Interstellar, what should I watch next?",
    "Who directed Inception?",
    "Who directed The Dark Knight?",
    "I'm in the mood for something funny.",
)


def _world(run: Path, concept: str) -> dict:
    from orin_unlearn.benchmarks.world_cli import write_world

    results = write_world(run / "world", concept)
    metrics = {k: v for k, v in results["prompts"].items() if k.startswith("heldout_") or k in ("forget",)}
    return {"stage": "world", "status": "ok", "metrics": {"films": results["films"], **metrics}}


def _base(run: Path, concept: str, limit: int) -> dict:
    from orin_unlearn.benchmarks.base_quality import measure_model_dir
    from orin_unlearn.benchmarks.world import tiny_base_dir

    model = tiny_base_dir()
    with stage_dir(run / "base") as tmp:
        result = measure_model_dir(model, limit=limit)
        write_json_atomic(tmp / "quality.json", result)
        inputs = {
            "model": sha256_dir(model, "*.safetensors"),
            "tokenizer": sha256_dir(model, "tokenizer*.json"),
        }
        write_json_atomic(
            tmp / "manifest.json", make_manifest("base", inputs, {"limit": limit}, result, result["ok"])
        )
    metrics = {name: s["all"]["accuracy"] for name, s in result["sets"].items()}
    note = (
        "all bars met"
        if result["ok"]
        else "BELOW BAR: " + ", ".join(k for k, b in result["bars"].items() if not b["ok"])
    )
    return {"stage": "base", "status": "ok" if result["ok"] else "failed", "metrics": metrics, "note": note}


def _unlearn(run: Path, concept: str, compare_runs: bool) -> tuple[list[dict], list[dict]]:
    """The masked LoRA run of train/configs/demo_tiny.yaml (and, optionally, its comparison runs)."""
    from importlib import resources

    from orin_unlearn.edge.config import load_config
    from orin_unlearn.train.unlearn import compare
    from orin_unlearn.train.unlearn.config import UnlearnConfig
    from orin_unlearn.train.unlearn.evaluate import print_before_after
    from orin_unlearn.train.unlearn.recipe import run_unlearning

    path = resources.files("orin_unlearn.train").joinpath("configs/demo_tiny.yaml")
    cfg = load_config(UnlearnConfig, str(path), [f"concept={concept}"])
    results = run_unlearning(cfg, run)
    print_before_after(results)
    params = results["parameters"]
    note = f"layers {results['layers']}, {100 * params['fraction']:.2f}% of parameters train"
    stages = [{"stage": "unlearn", "status": "ok", "metrics": compare.summary_row(results), "note": note}]
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


def _export(run: Path) -> list[dict]:
    """Merge, fp32 / fp16 / int8 / int4 ONNX, each measured and gated; the engine where TensorRT is."""
    from orin_unlearn.export import pipeline

    variants = ["fp32", "fp16", "int8", "int4"]
    summary = pipeline.export_all("tiny", [run / "adapter"], run / "export", variants, engine=True)
    pipeline.print_summary(summary)
    return pipeline.report_stages(summary)


def _analysis(run: Path) -> tuple[dict, list[dict]]:
    """The four analyses of the unlearning run (stability, similarity, layer sensitivity, shift)."""
    from orin_unlearn.benchmarks.analysis import cli

    summary = cli.run_analyses(run)
    cli.print_table(summary)
    done = [n for n, r in summary["analyses"].items() if r["status"] == "ok"]
    skipped = {n: r["reason"] for n, r in summary["analyses"].items() if r["status"] != "ok"}
    row = {
        "stage": "analysis",
        "status": "ok",
        "metrics": {"analyses": len(done)},
        "note": "; ".join(f"{n} {why}" for n, why in skipped.items()) or "analysis/analysis.json and plots",
    }
    return row, cli.sections(summary)


def _quality(run: Path) -> tuple[dict, dict, dict]:
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


def _kiosk(run: Path) -> tuple[dict, dict]:
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
        rows.append(f"| {question} | {result.text} |")
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


def _latency(run: Path) -> tuple[dict, dict]:
    """A small latency grid on the fp16 graph: TTFT, per-token times, the bandwidth limit."""
    from orin_unlearn.benchmarks import latency, plots
    from orin_unlearn.benchmarks.report import LATENCY_TITLE
    from orin_unlearn.edge.formats import write_json_atomic

    stage = run / "export" / "onnx-fp16"
    result = latency.run(stage, "auto", prompts=[32, 256], outputs=[16, 64], repeats=3, warmup=1)
    latency.print_table(result)
    (run / "bench").mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / "bench" / "latency.json", result)
    plots.draw(latency.plot, result, run / "bench" / "latency.png")
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
    return row, {"title": LATENCY_TITLE, "body": latency.markdown(result), "images": ["bench/latency.png"]}


def _robustness(run: Path) -> tuple[dict, dict]:
    """Leak rates of the base and the unlearned model under prompt attacks (on the shipped fp16
    graph) and weight attacks (relearning, quantisation; on the fp32 merge), and the logit lens."""
    from orin_unlearn.benchmarks import plots, robustness
    from orin_unlearn.benchmarks.report import ROBUSTNESS_TITLE
    from orin_unlearn.edge.formats import write_json_atomic

    result = robustness.run_run(run)
    robustness.print_table(result)
    write_json_atomic(run / "bench" / "robustness.json", result)
    plots.draw(robustness.plot, result, run / "bench" / "robustness.png")
    metrics = {f"{name} leak": r["unlearned"]["leak"] for name, r in result["attacks"].items()}
    row = {
        "stage": "bench/robustness",
        "status": "ok",
        "metrics": metrics,
        "note": "unlearned: fp16 graph (prompt attacks), fp32 merge (weight attacks); bench/robustness.png",
    }
    section = {
        "title": ROBUSTNESS_TITLE,
        "body": robustness.markdown(result),
        "images": ["bench/robustness.png"],
    }
    return row, section


def main(argv: list[str]) -> int:
    from orin_unlearn.benchmarks import quality_bench
    from orin_unlearn.benchmarks.report import print_summary, write_report
    from orin_unlearn.benchmarks.world import DEFAULT_CONCEPT

    parser = argparse.ArgumentParser(prog="orin-unlearn demo", description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="run directory")
    parser.add_argument("--concept", default=DEFAULT_CONCEPT, help="film title or director to forget")
    parser.add_argument("--limit", type=int, default=500, help="prompts sampled per base-quality set")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also train LUNAR, an unmasked LoRA and every weight (about 5 more minutes)",
    )
    args = parser.parse_args(argv)
    run = Path(args.out)
    start = time.time()
    stages = [_world(run, args.concept), _base(run, args.concept, args.limit)]
    unlearn_stages, sections = _unlearn(run, args.concept, compare_runs=args.compare)
    stages += unlearn_stages
    analysis_row, analysis_sections = _analysis(run)
    stages.append(analysis_row)
    sections += analysis_sections
    stages += _export(run)
    quality, quality_row, quality_section = _quality(run)
    stages.append(quality_row)
    sections.insert(0, quality_section)
    serve_row, kiosk_section = _kiosk(run)
    stages.append(serve_row)
    latency_row, latency_section = _latency(run)
    stages.append(latency_row)
    robust_row, robust_section = _robustness(run)
    stages.append(robust_row)
    sections += [robust_section, latency_section]
    sections.append(kiosk_section)
    summary = {
        "run": run.name,
        "concept": args.concept,
        "wall_s": round(time.time() - start, 1),
        "stages": stages,
        "sections": sections,
    }
    md, js = write_report(run, summary)
    print_summary(summary)
    quality_bench.print_table(quality)
    print(f"report: {md} {js}")
    print(json.dumps(summary))
    return 0 if all(s["status"] != "failed" for s in stages) else 1

"""The stage table and sections of a run's report, read from the files its stages wrote.

Every command writes its stage folder (world/, base/, adapter/, analysis/, export/, bench/,
serve/); this module turns those files into report rows ({"stage", "status", "metrics", "note"})
and sections, so a report says only what the run directory holds, whoever ran the commands (the
demo, a user typing them, a CI job). Display labels live here and in `report`, nowhere else.
`RUN/demo.json` (written by `orin-unlearn demo`) adds each step's exit status, error and time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orin_unlearn.benchmarks.forgetting import UnlearningMetrics, headline
from orin_unlearn.edge.formats import MANIFEST

# steps of a run in report order -> the stage name their row carries
STEPS = {
    "world": "world",
    "base_quality": "base",
    "unlearn": "unlearn",
    "analysis": "analysis",
    "export": "export",
    "quality": "bench/quality",
    "kiosk": "serve",
    "latency": "bench/latency",
    "robustness": "bench/robustness",
}
# analyses a real model's run leaves out, and why (the note names the command that runs them)
REAL_MODEL_SKIPS = {
    "stability": "skipped on a real model (640 greedy replies, 4.5 min for SmolLM2-135M on a 2-core CPU)"
}
QUALITY_TITLE = "Quality of every stage"
ROBUSTNESS_TITLE = "Robustness: leak rate under attack (held-out forget prompts)"
LATENCY_TITLE = "Latency"
KIOSK_TITLE = "Kiosk questions (fp16 ONNX, runtime)"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _results(stage: Path) -> dict:
    return _json(stage / MANIFEST)


def summary_row(results: dict) -> dict:
    """The after-unlearning metrics of one unlearning run (an adapter manifest's results), with
    the base's retain/neighbour, the leak after the weight attacks (when measured) and the cost."""
    before, after = (UnlearningMetrics.from_json(results[k]) for k in ("before", "after"))
    row = headline(after)
    for name, leak in results.get("after_training", {}).items():
        row[f"after {name}"] = leak
    row["base retain accuracy"] = before.value("retain", "accuracy")
    row["base neighbour accuracy"] = before.value("neighbour", "accuracy")
    row["trainable params"] = results["parameters"]["effective"]
    row["wall s"] = results["wall_s"]
    return row


def check_line(check: dict) -> str:
    """One unlearning bar check ({"bar", "meaning", "limit", "value", "sign", "ok"}) as text."""
    shown = "not measured" if check["value"] is None else f"{check['value']:.3f}"
    interval = check.get("interval")
    if interval is not None:
        shown += f" (95% CI {interval[0]:.3f}-{interval[1]:.3f})"
    return f"{check['bar']} ({check['meaning']}): {shown}, bar {check['sign']} {check['limit']:g}"


def world_row(run: Path) -> tuple[dict, list[dict]]:
    results = _results(run / "world")["results"]
    counts = results["prompts"]
    metrics = {k: v for k, v in counts.items() if k.startswith("heldout_") or k == "forget"}
    return {"stage": "world", "status": "ok", "metrics": {"films": results["films"], **metrics}}, []


def base_row(run: Path) -> tuple[dict, list[dict]]:
    """The base-quality bars (accuracy >= 0.95 / 0.80 / 0.90) are the tiny world model's; a real
    model is measured without them: on the item bank (base/knowledge.json, what the demo writes)
    or in free text (its manifest says `bars: none`)."""
    bank = run / "base" / "knowledge.json"
    if bank.is_file():
        sets = _json(bank)["sets"]
        metrics = {f"bank {name} right": part["right"] for name, part in sets.items()}
        return {
            "stage": "base",
            "status": "ok",
            "metrics": metrics,
            "note": "real model: item bank, no bars",
        }, []
    manifest = _results(run / "base")
    result = _json(run / "base" / "quality.json")
    metrics = {name: s["all"]["accuracy"] for name, s in result["sets"].items()}
    if manifest["config"].get("bars") == "none":
        return {
            "stage": "base",
            "status": "ok",
            "metrics": metrics,
            "note": "real model: measured, no bars",
        }, []
    missed = [k for k, b in result["bars"].items() if not b["ok"]]
    note = "all bars met" if not missed else "BELOW BAR: " + ", ".join(missed)
    return {"stage": "base", "status": "failed" if missed else "ok", "metrics": metrics, "note": note}, []


def unlearn_row(run: Path) -> tuple[dict, list[dict]]:
    results = _results(run / "adapter")["results"]
    params = results["parameters"]
    note = f"layers {results['layers']}, {100 * params['fraction']:.2f}% of parameters train"
    missed = [check_line(c) for c in results["bars"]["checks"] if not c["ok"]]
    if missed:
        note += "; BAR MISSED: " + "; ".join(missed)
    row = {"stage": "unlearn", "status": "failed" if missed else "ok", "metrics": summary_row(results)}
    sections = [
        {
            "title": "Where the concept lives (probe scores)",
            "body": f"Per-layer MLP-neuron scores on the forget prompts: saliency |activation x gradient|, "
            f"diagonal Fisher, and forget-vs-retain activation contrast; the LoRA may read only the "
            f"masked neurons of layers {results['layers']}.",
            "images": [f"probe/heatmaps/{name}.png" for name in ("saliency", "fisher", "contrast")],
        }
    ]
    if (run / "compare.md").is_file():  # `orin-unlearn unlearn compare` (demo --compare)
        body = (run / "compare.md").read_text(encoding="utf-8").strip()
        sections.append({"title": "Masked LoRA vs LUNAR vs unmasked LoRA vs full-parameter", "body": body})
    return row | {"note": note}, sections


def analysis_row(run: Path, real_model: bool) -> tuple[dict, list[dict]]:
    from orin_unlearn.benchmarks.analysis import cli

    summary = _json(run / "analysis" / "analysis.json")
    done = [n for n, r in summary["analyses"].items() if r["status"] == "ok"]
    skipped = {n: r["reason"] for n, r in summary["analyses"].items() if r["status"] != "ok"}
    if real_model:
        skipped |= {
            n: f"{why}: run `orin-unlearn analyze {run} --only {n}`"
            for n, why in REAL_MODEL_SKIPS.items()
            if n not in summary["analyses"]
        }
    row = {
        "stage": "analysis",
        "status": "ok",
        "metrics": {"analyses": len(done)},
        "note": "; ".join(f"{n} {why}" for n, why in skipped.items()) or "analysis/analysis.json and plots",
    }
    return row, cli.sections(summary)


def export_rows(run: Path) -> tuple[list[dict], list[dict]]:
    """Rows for the merged checkpoint, each ONNX variant and the engine, from export/export.json."""
    summary = _json(run / "export" / "export.json")
    merged = summary["merged"]
    note = "adapters merged in fp32, then cast"
    if (run / "adapter" / MANIFEST).is_file() and _results(run / "adapter")["ok"] is not True:
        note += "; from an adapter that missed its bars (measured, not for deployment)"
    rows = [
        {
            "stage": "export/merged",
            "status": "ok",
            "metrics": {f"update kept in {merged['dtype']}": merged["fraction"]},
            "note": note,
        }
    ]
    for name, r in summary["variants"].items():
        error = max(r["parity"]["prefill"]["max_abs"], r["parity"].get("decode", {}).get("max_abs", 0.0))
        metrics = headline(UnlearningMetrics.from_json(r["metrics"])) | {
            "update kept": r["survival"]["fraction"],
            "max abs dlogit": f"{error:.1e}",
            "greedy same": f"{r['greedy']['identical']}/{r['greedy']['n']}",
        }
        rows.append(
            {
                "stage": f"export/onnx-{name}",
                "status": "ok" if r["ok"] else "failed",
                "metrics": metrics,
                "note": "parity and gate passed" if r["ok"] else "; ".join(r["failures"]),
            }
        )
    engine = summary["engine"]
    rows.append(
        {
            "stage": "engine",
            "status": engine["status"],
            "note": engine.get("reason", engine.get("engine", "")),
        }
    )
    return rows, []


def quality_row(run: Path) -> tuple[dict, list[dict]]:
    """Every stage of the run on the same held-out prompts and general corpus: the headline."""
    from orin_unlearn.benchmarks import quality_bench

    result = _json(run / "bench" / "quality.json")
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
    body = quality_bench.markdown(result)
    images = ["bench/quality.png"] + (
        ["bench/knowledge.png"] if (run / "bench" / "knowledge.png").is_file() else []
    )
    return row, [{"title": QUALITY_TITLE, "body": body, "first": True, "images": images}]


def _cell(text: str) -> str:
    """A reply as one Markdown table cell: a real model's replies hold newlines and pipes."""
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def kiosk_row(run: Path) -> tuple[dict, list[dict]]:
    """The kiosk questions `orin-unlearn ask` answered through the torch-free runtime."""
    result = _json(run / "serve" / "answers.json")
    answers = result["answers"]
    ttft = sorted(a["ttft_s"] for a in answers)
    rate = sorted(a["decode_tokens_per_s"] or 0.0 for a in answers)
    metrics = {
        "questions": len(answers),
        "median ttft ms": round(1000 * ttft[len(ttft) // 2], 1),
        "median decode tok/s": round(rate[len(rate) // 2], 1),
    }
    model = Path(result["model"])
    where = model.relative_to(run) if model.is_relative_to(run) else model
    row = {
        "stage": "serve",
        "status": "ok",
        "metrics": metrics,
        "note": f"{where} via the {result['backend']} runtime (torch-free)",
    }
    table = "\n".join(f"| {a['question']} | {_cell(a['answer'])} |" for a in answers)
    return row, [{"title": KIOSK_TITLE, "body": "| question | answer |\n|---|---|\n" + table}]


def latency_row(run: Path) -> tuple[dict, list[dict]]:
    """TTFT, per-token times and the bandwidth limit of the largest cell of the latency grid."""
    from orin_unlearn.benchmarks import latency

    result = _json(run / "bench" / "latency.json")
    cell = result["cells"][-1]
    metrics = {
        f"ttft p50 ms ({cell['prompt_tokens']}-token prompt)": round(cell["ttft_ms"]["p50"], 1),
        "token p50 ms": round(cell["token_ms"]["p50"], 2),
        "token p99 ms": round(cell["token_ms"]["p99"], 2),
        "decode tok/s": round(cell["decode_tokens_per_s"], 1),
        "of bandwidth limit": round(latency.fraction_here(result["roofline"]), 3),
        "peak RSS MB": round(result["peak_rss_mb"]),
    }
    row = {
        "stage": "bench/latency",
        "status": "ok",
        "metrics": metrics,
        "note": "bench/latency.json, latency.png",
    }
    section = {"title": LATENCY_TITLE, "body": latency.markdown(result), "images": ["bench/latency.png"]}
    return row, [section]


def _verdict(value: bool | None) -> str:
    return "-" if value is None else ("met" if value else "missed")


def robustness_row(run: Path) -> tuple[dict, list[dict]]:
    """Leak rates under prompt and weight attacks, and the deep-forgetting card's bars."""
    from orin_unlearn.benchmarks import robustness, robustness_card, robustness_report

    result = robustness.read(run / "bench" / "robustness.json")
    metrics = {f"{name} leak": result.leak(name) for name in result.attacks}
    card = robustness_card.card(result)
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
        "body": robustness_report.markdown(result),
        "images": ["bench/robustness.png"],
    }
    return row, [section]


def step_rows(run: Path, step: str, real_model: bool) -> tuple[list[dict], list[dict]]:
    """The rows and sections of one step, from its files; FileNotFoundError when it wrote none."""
    if step == "export":
        return export_rows(run)
    builders = {
        "world": world_row,
        "base_quality": base_row,
        "unlearn": unlearn_row,
        "quality": quality_row,
        "kiosk": kiosk_row,
        "latency": latency_row,
        "robustness": robustness_row,
    }
    row, sections = analysis_row(run, real_model) if step == "analysis" else builders[step](run)
    return [row], sections


# report order of sections after the quality table: where they come from
SECTION_ORDER = ("unlearn", "analysis", "robustness", "latency", "kiosk")


def summarize(run: Path, steps: dict[str, dict] | None = None, real_model: bool = False) -> dict:
    """The report summary of `run`: a row per step from its files, and the sections. `steps`
    ({name: {"status", "reason"}}, from demo.json) limits the rows to the steps that ran; a step
    with a reason (skipped, or failed without writing results) gets a row saying why. Without
    `steps`, every step whose files exist is reported."""
    rows: list[dict] = []
    sections: dict[str, list[dict]] = {}
    for step, stage in STEPS.items():
        info = (steps or {}).get(step)
        if steps is not None and info is None:
            continue  # not part of this run's steps
        if info is not None and info.get("reason"):
            rows.append(
                {"stage": stage, "status": info["status"], "reason": info["reason"], "note": info["reason"]}
            )
            continue
        try:
            got, extra = step_rows(run, step, real_model)
        except FileNotFoundError:
            if steps is not None:
                rows.append({"stage": stage, "status": "failed", "note": "the step wrote no results"})
            continue
        rows += got
        sections[step] = extra
    ordered = sections.get("quality", [])
    for step in SECTION_ORDER:
        ordered += sections.get(step, [])
    return {"stages": rows, "sections": ordered}

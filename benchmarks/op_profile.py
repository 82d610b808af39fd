"""`orin-unlearn bench profile`: where a decode step's time goes, per operator type, from
onnxruntime's own profiler.

The stage's graph is opened with profiling on, prefilled with `--context` tokens, then decoded
`--tokens` steps through the serving backend; the profiler's node events of the decode steps are
summed per operator type and divided by the steps. What is left of the step's wall time is the
time outside the kernels (session run overhead, binding, Python).

    orin-unlearn bench profile --model runs/smollm2-onnx/onnx-int4-fused --context 256 --tokens 32

The last stdout line is the whole result as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from orin_unlearn.edge.backends.ort_backend import GRAPH, OrtBackend, OrtDecoder, max_context_of
from orin_unlearn.edge.formats import verify_stage


def op_times(events: list[dict[str, Any]], runs: int) -> tuple[dict[str, float], float]:
    """({operator type: microseconds}, microseconds inside `Session::Run`) of the profiler's
    events during the last `runs` session runs."""
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(starts) < runs:
        raise ValueError(f"the profile holds {len(starts)} session runs, fewer than {runs}")
    first = starts[-runs]
    in_runs = sum(float(e["dur"]) for e in events if e.get("name") == "model_run" and e.get("ts", 0) >= first)
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or event.get("ts", 0) < first:
            continue
        op = event.get("args", {}).get("op_name")
        if op and event.get("name", "").endswith("_kernel_time"):
            totals[op] += float(event.get("dur", 0))
    return dict(totals), in_runs


def profile(model_dir: str | Path, threads: int, context: int, tokens: int) -> dict[str, Any]:
    model_dir = Path(model_dir)
    verify_stage(model_dir)
    decoder = OrtDecoder(model_dir / GRAPH, threads=threads, profile=str(model_dir.parent / ".ort-profile"))
    backend = OrtBackend(decoder, max_context_of(model_dir))
    ids = [int(i) for i in np.random.default_rng(0).integers(100, 4000, context)]
    logits = backend.prefill(ids)
    logits = backend.decode(int(np.argmax(logits)))  # warm-up step
    started = time.perf_counter()
    for _ in range(tokens):
        logits = backend.decode(int(np.argmax(logits)))
    wall = (time.perf_counter() - started) / tokens * 1e6
    trace = Path(decoder.session.end_profiling())
    events = json.loads(trace.read_text(encoding="utf-8"))
    trace.unlink()
    ops, in_runs = op_times(events, tokens)
    per_op = {op: us / tokens for op, us in ops.items()}
    kernels = sum(per_op.values())
    return {
        "model": str(model_dir),
        "threads": threads,
        "context": context,
        "tokens": tokens,
        "step_us": round(wall, 1),
        "run_us": round(in_runs / tokens, 1),
        "kernels_us": round(kernels, 1),
        "outside_kernels_us": round(wall - kernels, 1),
        "ops_us": {op: round(us, 1) for op, us in sorted(per_op.items(), key=lambda kv: -kv[1])},
        "note": "profiling adds per-node overhead; step_us is slower than an unprofiled step",
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"decode step at {result['context']} tokens of context, {result['threads']} threads: "
        f"{result['step_us'] / 1e3:.2f} ms ({result['model']})"
    )
    for column in ("operator", "us per token", "share of the step"):
        table.add_column(column, justify="left" if column == "operator" else "right")
    for op, us in result["ops_us"].items():
        table.add_row(op, f"{us:.1f}", f"{us / result['step_us']:.1%}")
    table.add_row(
        "outside the kernels",
        f"{result['outside_kernels_us']:.1f}",
        f"{result['outside_kernels_us'] / result['step_us']:.1%}",
    )
    Console(width=110).print(table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn bench profile", description=__doc__)
    parser.add_argument("--model", required=True, help="ONNX stage folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=256, help="prompt tokens before the decode steps")
    parser.add_argument("--tokens", type=int, default=32, help="decode steps profiled")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.context < 1 or args.tokens < 1:
        raise ValueError("--context and --tokens must be at least 1")
    result = profile(args.model, args.threads, args.context, args.tokens)
    print_table(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result))
    return 0

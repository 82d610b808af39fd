"""`orin-unlearn bench latency`: time to first token and per-token decode time over a grid of
prompt lengths x output lengths, through the same Generator the server uses.

After `--warmup` requests, each grid cell runs `--repeats` requests of exactly that many prompt
tokens and generated tokens (end-of-turn ignored); reported per cell: TTFT and per-token p50 /
p95 / p99, decode tokens/s, and for the whole run the peak resident memory and decode tokens/s
against the memory-bandwidth limit here (measured as in `bench decode`, and never below what the
best cell read) and on each Orin module. On a Jetson, tegrastats runs during the measured cells:
average / peak module power, energy and tokens per joule, with the nvpmodel power mode and
jetson_clocks state (`--power auto`, the default; elsewhere the JSON says why there is no power
figure).

    orin-unlearn bench latency --model runs/demo/export/onnx-fp16 --out runs/demo/bench
    orin-unlearn bench latency --model /tmp/q05/onnx-int4 --prompts 32,256 --outputs 32

Writes latency.json (and latency.png with matplotlib) under --out; the last stdout line is the
whole result as one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from orin_unlearn.benchmarks import plots, roofline
from orin_unlearn.edge.backends.ort_backend import GRAPH
from orin_unlearn.edge.formats import write_json_atomic
from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.sampling import SamplingParams

FILLER = "Tell me about films with dreams, heists, memory and time. "


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 (linear interpolation), in the values' unit."""
    if not values:
        raise ValueError("no values to summarise")
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def prompt_of(generator: Generator, tokens: int) -> list[dict]:
    """A user message whose chat-templated prompt has exactly `tokens` tokens (ValueError if the
    template alone is longer)."""
    base = len(generator.prompt_ids([{"role": "user", "content": ""}]))
    if tokens < base + 1:
        raise ValueError(f"a prompt of {tokens} tokens is shorter than the chat template ({base + 1})")
    words, text = FILLER.split(), ""
    while len(generator.tokenizer.encode_chat([{"role": "user", "content": text}])) < tokens:
        text += words[len(text.split()) % len(words)] + " "
    ids = generator.tokenizer.encode_chat([{"role": "user", "content": text}])
    while len(ids) > tokens:  # the last word overshot: trim characters
        text = text[:-1]
        ids = generator.tokenizer.encode_chat([{"role": "user", "content": text}])
    return [{"role": "user", "content": text}]


def fit_lengths(generator: Generator, prompts: list[int], outputs: list[int]) -> list[int]:
    """`prompts` clamped to what the model takes: at least the empty chat template plus one token
    (a real chat template may carry a long default system prompt), at most the context less the
    longest output; repeats dropped, order kept. ValueError when no prompt fits at all."""
    shortest = len(generator.prompt_ids([{"role": "user", "content": ""}])) + 1
    longest = min(generator.max_prompt, generator.backend.max_context - max(outputs))
    if shortest > longest:
        raise ValueError(
            f"no prompt fits: the chat template takes {shortest - 1} tokens and the context "
            f"{generator.backend.max_context} must leave room for {max(outputs)} generated tokens"
        )
    return list(dict.fromkeys(min(max(p, shortest), longest) for p in prompts))


def measure_cell(generator: Generator, prompt: list[dict], outputs: int, repeats: int) -> dict[str, Any]:
    ttft, gaps, rates, prompt_tokens = [], [], [], 0
    for _ in range(repeats):
        result = generator.generate(prompt, SamplingParams(max_new_tokens=outputs, ignore_eos=True))
        latency = result.latency
        prompt_tokens = result.prompt_tokens
        ttft.append(latency["ttft_s"] * 1000)
        gaps += [g * 1000 for g in latency["token_s"]]
        rates.append(latency["decode_tokens_per_s"] or 0.0)
    return {
        "prompt_tokens": prompt_tokens,
        "output_tokens": outputs,
        "ttft_ms": percentiles(ttft),
        "token_ms": percentiles(gaps) if gaps else None,
        "decode_tokens_per_s": float(np.median(rates)),
        "token_ms_all": gaps,
    }


@contextlib.contextmanager
def power_logger(mode: str) -> Iterator[Any]:
    """A running tegrastats logger (mode "auto": when tegrastats exists; "on": required; "off"),
    or the reason there is none as a string."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"power must be auto, on or off, got {mode!r}")
    if mode == "off":
        yield "not measured (--power off)"
        return
    from orin_unlearn.edge.device.telemetry import TegrastatsLogger, TegrastatsUnavailableError

    with contextlib.ExitStack() as stack:
        logger = TegrastatsLogger(interval_ms=100)
        try:
            stack.enter_context(logger)
            reason = ""
        except TegrastatsUnavailableError as e:
            if mode == "on":
                raise ValueError(f"--power on: {e}") from e
            reason = f"not measured: {e}"
        yield reason or logger


def power_record(logger: Any, tokens: int) -> dict[str, Any]:
    """Average / peak power, energy and tokens per joule over the measured cells (on a Jetson),
    with the power mode and clocks; else why not."""
    if isinstance(logger, str):
        return {"unavailable": logger}
    from orin_unlearn.edge.device.telemetry import capture_power_state, summary

    try:
        power = summary(logger.samples, logger.duration_s, tokens).as_dict()
    except ValueError as e:  # no sample, or none with a power rail
        return {"unavailable": f"tegrastats gave no power reading: {e}"}
    return {**power, "state": capture_power_state()}


def run(
    model_dir: str | Path,
    backend: str,
    prompts: list[int],
    outputs: list[int],
    repeats: int,
    warmup: int,
    power: str = "auto",
    fit: bool = False,
    probe_mib: int | None = None,
) -> dict[str, Any]:
    """Measure the grid; with `fit`, prompt lengths the model cannot take are clamped into its
    range (`fit_lengths`) instead of failing. `probe_mib` sizes the bandwidth probe's buffer."""
    model_dir = Path(model_dir)
    generator = Generator.from_dir(model_dir, backend)
    if fit:
        prompts = fit_lengths(generator, prompts, outputs)
    cells = [(p, o) for p in prompts for o in outputs]
    for p, o in cells[:1] * warmup:
        generator.generate(prompt_of(generator, p), SamplingParams(max_new_tokens=o, ignore_eos=True))
    with power_logger(power) as logger:
        results = [measure_cell(generator, prompt_of(generator, p), o, repeats) for p, o in cells]
    out: dict[str, Any] = {
        "model": str(model_dir),
        "backend": generator.backend_name,
        "repeats": repeats,
        "cells": results,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "power": power_record(logger, sum(o * repeats for _, o in cells)),
    }
    if (model_dir / GRAPH).is_file():
        out["roofline"] = roofline_record(model_dir / GRAPH, results, probe_mib)
    return out


def roofline_record(graph: Path, cells: list[dict[str, Any]], probe_mib: int | None) -> dict[str, Any]:
    """Weights read per token, the bandwidth (measured with as many threads as onnxruntime uses
    by default, raised to the best cell's rate if that read faster) and the limits it gives."""
    per_token = roofline.weight_bytes_per_token(graph)
    best = max(c["decode_tokens_per_s"] for c in cells)
    measured = roofline.measure_bandwidth(roofline.usable_cpus(), probe_mib)
    bandwidth = roofline.cap_to_decode(measured, best, per_token)
    return {
        "weight_bytes_per_token": per_token,
        "read_bandwidth_gb_s": bandwidth.bytes_per_s / 1e9,
        "limit_tokens_per_s": roofline.limits(per_token, bandwidth.bytes_per_s),
        "fraction_here": roofline.roofline_fraction(best, per_token, bandwidth.bytes_per_s),
        "bandwidth": bandwidth.to_json(),
    }


def bandwidth_note(roof: dict[str, Any]) -> str:
    """How the bandwidth behind the limit was found (files written before the probe recorded
    its method say only 'measured')."""
    record = roof.get("bandwidth")
    if record is None:
        return f"{roof['read_bandwidth_gb_s']:.1f} GB/s measured"
    if record["raised_by_decode"]:
        return (
            f"{record['gb_s']:.1f} GB/s implied by that cell, since the probe's "
            f"{record['probe_gb_s']:.1f} GB/s ({record['probe_method']}) under-measured"
        )
    return f"{record['gb_s']:.1f} GB/s measured, {record['method']}, {record['threads']} threads"


def fraction_here(roof: dict[str, Any]) -> float:
    """The best cell's share of the limit here, at most 1 also for files written before the
    limit was raised to a decode that beat it."""
    return min(1.0, roof["fraction_here"])


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """Per-token latency distributions per cell, and decode tokens/s against the limit."""
    plt = plots.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    cells = result["cells"]
    labels = [f"{c['prompt_tokens']}+{c['output_tokens']}" for c in cells]
    left.boxplot([c["token_ms_all"] or [0.0] for c in cells], showfliers=False)
    left.set_xticks(range(1, len(cells) + 1), labels, rotation=30)
    left.set_xlabel("prompt + output tokens")
    left.set_ylabel("ms per generated token")
    left.set_title("decode latency")
    rates = [c["decode_tokens_per_s"] for c in cells]
    right.bar(labels, rates, color="#3b7dd8", label="measured")
    if "roofline" in result:
        right.axhline(
            result["roofline"]["limit_tokens_per_s"]["here"],
            color="#d8553b",
            ls="--",
            label="bandwidth limit here",
        )
    right.set_ylabel("decode tokens/s")
    right.set_title(f"{result['backend']}: {Path(result['model']).name}")
    right.tick_params(axis="x", rotation=30)
    right.legend()
    fig.tight_layout()
    return plots.save(fig, path)


def markdown(result: dict[str, Any]) -> str:
    """The grid as a Markdown table, with the roofline and power lines."""
    lines = [
        f"{result['backend']} backend, {Path(result['model']).name}, {result['repeats']} requests per cell.",
        "",
        "| prompt | output | TTFT p50 / p95 / p99 ms | token p50 / p95 / p99 ms | decode tok/s |",
        "|---|---|---|---|---|",
    ]
    for c in result["cells"]:
        t, k = c["ttft_ms"], c["token_ms"] or {"p50": 0, "p95": 0, "p99": 0}
        lines.append(
            f"| {c['prompt_tokens']} | {c['output_tokens']} | {t['p50']:.1f} / {t['p95']:.1f} / {t['p99']:.1f} "
            f"| {k['p50']:.2f} / {k['p95']:.2f} / {k['p99']:.2f} | {c['decode_tokens_per_s']:.1f} |"
        )
    lines.append("")
    roof = result.get("roofline")
    if roof:
        limits = ", ".join(f"{n} {v:.0f}" for n, v in roof["limit_tokens_per_s"].items())
        lines.append(
            f"Peak RSS {result['peak_rss_mb']:.0f} MB. {roof['weight_bytes_per_token'] / 1e6:.1f} MB of weights "
            f"read per token; bandwidth limits in tokens/s: {limits}; the best cell reaches "
            f"{fraction_here(roof):.0%} of the limit here ({bandwidth_note(roof)})."
        )
    power = result.get("power", {})
    if "avg_w" in power:
        lines.append(
            f"Power ({power['rail']}, tegrastats): {power['avg_w']:.2f} W average, {power['peak_w']:.2f} W peak, "
            f"{power['energy_j']:.1f} J, {power['tokens_per_joule']:.1f} tokens per joule."
        )
    elif power:
        lines.append(f"Power: {power['unavailable']}.")
    return "\n".join(lines)


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"latency, {result['backend']} backend: {result['model']}")
    for column in ("prompt", "output", "TTFT p50/p95/p99 ms", "token p50/p95/p99 ms", "decode tok/s"):
        table.add_column(column, justify="right")
    for c in result["cells"]:
        t, k = c["ttft_ms"], c["token_ms"] or {"p50": 0, "p95": 0, "p99": 0}
        table.add_row(
            str(c["prompt_tokens"]),
            str(c["output_tokens"]),
            f"{t['p50']:.1f} / {t['p95']:.1f} / {t['p99']:.1f}",
            f"{k['p50']:.2f} / {k['p95']:.2f} / {k['p99']:.2f}",
            f"{c['decode_tokens_per_s']:.1f}",
        )
    roof = result.get("roofline")
    if roof:
        limits = ", ".join(f"{n} {v:.0f}" for n, v in roof["limit_tokens_per_s"].items())
        table.caption = (
            f"peak RSS {result['peak_rss_mb']:.0f} MB; {roof['weight_bytes_per_token'] / 1e6:.1f} MB read per token; "
            f"bandwidth limits (tok/s): {limits}; best cell = {fraction_here(roof):.0%} of the limit here "
            f"({bandwidth_note(roof)})"
        )
    power = result.get("power", {})
    if "avg_w" in power:
        table.caption = (table.caption or "") + (
            f"\npower ({power['rail']}): {power['avg_w']:.2f} W average, {power['peak_w']:.2f} W peak, "
            f"{power['tokens_per_joule']:.1f} tokens/J"
        )
    elif power:
        table.caption = (table.caption or "") + f"\npower: {power['unavailable']}"
    Console(width=120).print(table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn bench latency", description=__doc__)
    parser.add_argument("--model", required=True, help="ONNX or engine stage folder, or a HF checkpoint")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--prompts", default="32,128,384", help="prompt lengths in tokens")
    parser.add_argument("--outputs", default="16,64", help="generated tokens per request")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", help="folder for latency.json and latency.png")
    parser.add_argument(
        "--power", default="auto", choices=("auto", "on", "off"), help="tegrastats power logging (Jetson)"
    )
    parser.add_argument(
        "--fit",
        action="store_true",
        help="clamp prompt lengths the model's context cannot take, instead of failing",
    )
    parser.add_argument(
        "--probe-mib",
        type=int,
        help="bandwidth probe buffer, MiB (default: 1 GiB or 4x the last-level cache, the larger)",
    )
    args = parser.parse_args(argv)
    from orin_unlearn.edge.device.preflight import warn_on_device

    warn_on_device()
    prompts = [int(x) for x in args.prompts.split(",")]
    outputs = [int(x) for x in args.outputs.split(",")]
    if min(prompts + outputs) < 1 or args.repeats < 1:
        raise ValueError("lengths and --repeats must be positive")
    result = run(
        args.model,
        args.backend,
        prompts,
        outputs,
        args.repeats,
        args.warmup,
        args.power,
        args.fit,
        args.probe_mib,
    )
    print_table(result)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "latency.json", result)
        plots.draw(plot, result, out / "latency.png")
    print(
        json.dumps(
            {k: v for k, v in result.items() if k != "cells"}
            | {"cells": [{k: v for k, v in c.items() if k != "token_ms_all"} for c in result["cells"]]}
        )
    )
    return 0

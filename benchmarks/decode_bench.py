"""`orin-unlearn bench decode`: batch-1 decode speed of the runtime, against the raw engine, the
memory-bandwidth limit and (optionally) Hugging Face `generate` on the same weights.

- raw loop: prefill, then decode steps straight on the backend with arg-max, nothing else;
  runs alternate with generator runs; rates are each side's best run (other load on the machine
  only ever slows a run down), the overhead is the median of the paired run ratios;
- generator: the same number of tokens through `Generator` (tokenizer, sampling, stop handling,
  streaming text, latency records); its overhead is 1 - generator / raw;
- roofline: decoding reads every weight once per token, so tokens/s cannot exceed
  bandwidth / weight bytes read per token (the embedding table is gathered, not read);
  bandwidth is measured here with the decode's thread count, by several methods streaming a
  buffer far larger than the caches (numpy, BLAS, an onnxruntime fp32 matrix-vector product;
  the best is used, and the JSON's `bandwidth` says how each did). Should the raw loop still
  read faster than that, the probe under-measured: its own rate is the bandwidth (a warning
  says so) and `roofline_fraction` is 1, never more.

    orin-unlearn bench decode --model runs/demo/export/onnx-fp32 --threads 2
    orin-unlearn bench decode --model /tmp/q05/onnx-fp32 --hf /tmp/q05/hf --tokens 64

The last stdout line is the whole result as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from orin_unlearn.benchmarks.roofline import (
    cap_to_decode,
    measure_bandwidth,
    roofline_fraction,
    weight_bytes_per_token,
)
from orin_unlearn.edge.backends.ort_backend import GRAPH, OrtBackend
from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.sampling import SamplingParams
from orin_unlearn.edge.tokenizer import ChatTokenizer

PROMPT = [{"role": "user", "content": "Recommend a film from the science fiction genre."}]
# what onnxruntime raises for a graph it cannot load (its own types, which derive from Exception only)
ORT_LOAD_ERRORS = (
    "Fail",
    "InvalidArgument",
    "InvalidGraph",
    "InvalidProtobuf",
    "NoSuchFile",
    "RuntimeException",
)


def raw_rate(backend: OrtBackend, prompt: list[int], steps: int) -> float:
    """Decode tokens/s of the raw decode-benchmark loop: arg-max straight on the backend, with no
    stop tokens, text or sampling. Deliberately not a chat path: replies that are measured go
    through `edge.answers.BackendChat`, served ones through `Generator`."""
    logits = backend.prefill(prompt)
    start = time.perf_counter()
    for _ in range(steps):
        logits = backend.decode(int(np.argmax(logits)))
    return steps / (time.perf_counter() - start)


def generator_rate(generator: Generator, steps: int) -> tuple[float, int]:
    """(decode tokens/s, tokens) of one greedy request through the Generator."""
    result = generator.generate(PROMPT, SamplingParams(max_new_tokens=steps + 1, ignore_eos=True))
    return result.latency["decode_tokens_per_s"] or 0.0, result.completion_tokens


def hf_rate(hf_dir: str | Path, prompt: list[int], steps: int, threads: int) -> float:
    """Decode tokens/s of transformers' `generate` (greedy, its KV cache) on the same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    ids = torch.tensor([prompt])

    def timed(new: int) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
        return time.perf_counter() - start

    timed(2)  # warm-up
    one, many = timed(1), timed(steps + 1)  # the difference is `steps` decode steps
    return steps / max(many - one, 1e-9)


def open_graph(model_dir: Path, threads: int) -> OrtBackend:
    """The ONNX stage's backend. Raises FileNotFoundError when `model_dir` holds no model.onnx (a
    Hugging Face checkpoint, say) and ValueError naming the file when onnxruntime cannot load it."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    graph = model_dir / GRAPH
    if not graph.is_file():
        checkpoint = (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors"))
        hint = ": a Hugging Face checkpoint; export it first (orin-unlearn export)" if checkpoint else ""
        raise FileNotFoundError(f"{graph} does not exist{hint}")
    load_errors = tuple(getattr(ort_errors, name) for name in ORT_LOAD_ERRORS)
    try:
        return OrtBackend.from_dir(model_dir, threads=threads)
    except KeyError as e:  # config.json without max_position_embeddings
        raise ValueError(f"{model_dir / 'config.json'} has no {e} (needed for the context length)") from e
    except ValueError as e:  # not a decoder graph with a KV cache, or a failed stage
        raise ValueError(e if str(model_dir) in str(e) else f"{graph}: {e}") from e
    except load_errors as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{graph} cannot be loaded by onnxruntime (truncated or corrupt?): {reason}") from e


def run(
    model_dir: str | Path,
    threads: int,
    steps: int,
    repeats: int,
    hf_dir: str | Path | None,
    probe_mib: int | None = None,
) -> dict[str, Any]:
    """Decode rates and their limit; `probe_mib` sizes the bandwidth probe's buffer (default:
    `roofline.default_buffer_mib`)."""
    model_dir = Path(model_dir)
    backend = open_graph(model_dir, threads)
    tokenizer = ChatTokenizer(model_dir)
    generator = Generator(backend, tokenizer)
    prompt = tokenizer.encode_chat(PROMPT)
    raw_rate(backend, prompt, 4)  # warm-up
    gen_rates, raw_rates, produced = [], [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        rate, tokens = generator_rate(generator, steps)
        gen_rates.append(rate)
        produced.append(tokens)
        raw_rates.append(raw_rate(backend, prompt, max(tokens - 1, 1)))
    per_token = weight_bytes_per_token(model_dir / GRAPH)
    # Best of N (interference from the rest of the machine only ever slows a run down) for the
    # rates; the overhead is the median of the paired ratios, which drift in load cancels out of.
    raw, gen = max(raw_rates), max(gen_rates)
    bandwidth = cap_to_decode(measure_bandwidth(threads, probe_mib), raw, per_token)
    paired = statistics.median(g / r for g, r in zip(gen_rates, raw_rates, strict=True))
    result: dict[str, Any] = {
        "model": str(model_dir),
        "threads": threads,
        "decode_tokens": statistics.median(produced) - 1,
        "raw_tokens_per_s": round(raw, 2),
        "generator_tokens_per_s": round(gen, 2),
        "generator_vs_raw": round(paired, 4),
        "generator_vs_raw_best": round(gen / raw, 4),
        "weight_bytes_per_token": per_token,
        "read_bandwidth_gb_s": round(bandwidth.bytes_per_s / 1e9, 4),
        "roofline_tokens_per_s": round(bandwidth.bytes_per_s / per_token, 2),
        "roofline_fraction": round(roofline_fraction(raw, per_token, bandwidth.bytes_per_s), 4),
        "bandwidth": bandwidth.to_json(),
        "raw_runs": [round(r, 2) for r in raw_rates],
        "generator_runs": [round(r, 2) for r in gen_rates],
    }
    if hf_dir is not None:
        hf = hf_rate(hf_dir, prompt, int(result["decode_tokens"]), threads)
        result |= {"hf_generate_tokens_per_s": round(hf, 2), "raw_vs_hf": round(raw / hf, 2)}
    return result


def bandwidth_text(record: dict[str, Any]) -> str:
    """The bandwidth used and where it came from, e.g. '54.1 GB/s (ort-matvec-fp32; numpy-sum-fp32
    36.2, ...)' or '54.1 GB/s implied by the decode (probe: 36.2 GB/s, ort-matvec-fp32)'."""
    others = ", ".join(f"{name} {v:.1f}" for name, v in record["methods_gb_s"].items())
    if record["raised_by_decode"]:
        return (
            f"{record['gb_s']:.1f} GB/s implied by the decode (the probe under-measured: "
            f"{record['probe_gb_s']:.1f} GB/s; {others})"
        )
    return f"{record['gb_s']:.1f} GB/s ({record['method']}; {others})"


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"decode, batch 1, {result['threads']} threads: {result['model']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("raw engine loop", f"{result['raw_tokens_per_s']} tok/s"),
        (
            "through the Generator",
            f"{result['generator_tokens_per_s']} tok/s ({result['generator_vs_raw']:.1%} of raw)",
        ),
        ("weights read per token", f"{result['weight_bytes_per_token'] / 1e6:.1f} MB"),
        ("read bandwidth", bandwidth_text(result["bandwidth"])),
        ("bandwidth limit", f"{result['roofline_tokens_per_s']} tok/s"),
        ("raw loop / limit", f"{result['roofline_fraction']:.1%}"),
    ]
    if "hf_generate_tokens_per_s" in result:
        rows.append(
            (
                "transformers generate",
                f"{result['hf_generate_tokens_per_s']} tok/s (raw is {result['raw_vs_hf']}x)",
            )
        )
    for row in rows:
        table.add_row(*row)
    Console(width=110).print(table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn bench decode", description=__doc__)
    parser.add_argument("--model", required=True, help="ONNX stage folder (model.onnx, config, tokenizer)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128, help="decode steps per run (end-of-turn ignored)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hf", help="Hugging Face checkpoint of the same weights, to time generate")
    parser.add_argument(
        "--probe-mib",
        type=int,
        help="bandwidth probe buffer, MiB (default: 1 GiB or 4x the last-level cache, the larger)",
    )
    args = parser.parse_args(argv)
    result = run(args.model, args.threads, args.tokens, args.repeats, args.hf, args.probe_mib)
    print_table(result)
    print(json.dumps(result))
    return 0

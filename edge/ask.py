"""`orin-unlearn ask`: put questions to a stage through the runtime the server uses, one reply each.

What the kiosk would answer, without starting the server: each question is a new conversation,
answered greedily (temperature 0) by the same `Generator` and backend `serve` uses, with the
first-token and decode times of each reply.

    orin-unlearn ask --model runs/demo/export/onnx-fp16 "Who directed Inception?"
    orin-unlearn ask --model runs/demo/export/onnx-fp16 --out runs/demo/serve Q1 Q2 ...

With `--out`, writes answers.json ({"model", "backend", "answers": [{"question", "answer",
"ttft_s", "decode_tokens_per_s"}]}) and the per-request latency log latency.jsonl there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from orin_unlearn.edge.formats import write_json_atomic
from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.sampling import SamplingParams


def ask(model: Path, questions: list[str], max_new_tokens: int = 60, out: Path | None = None) -> dict:
    """Each question answered by `model` through the runtime; written to `out` when given."""
    latency_path = None if out is None else out / "latency.jsonl"
    generator = Generator.from_dir(model, latency_path=latency_path)
    answers = []
    for question in questions:
        result = generator.generate(
            [{"role": "user", "content": question}], SamplingParams(max_new_tokens=max_new_tokens)
        )
        answers.append(
            {
                "question": question,
                "answer": result.text,
                "ttft_s": result.latency["ttft_s"],
                "decode_tokens_per_s": result.latency["decode_tokens_per_s"],
            }
        )
        print(f"  Q: {question}\n  A: {result.text}")
    summary = {"model": str(model), "backend": generator.backend_name, "answers": answers}
    if out is not None:
        write_json_atomic(out / "answers.json", summary)
    return summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="orin-unlearn ask", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="stage folder: ONNX, engine or HF checkpoint")
    parser.add_argument("--out", help="folder for answers.json and latency.jsonl")
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("questions", nargs="+", help="one conversation per question")
    args = parser.parse_args(argv)
    summary = ask(Path(args.model), args.questions, args.max_new_tokens, Path(args.out) if args.out else None)
    print(json.dumps(summary))
    return 0

"""`orin-unlearn world eval-base`: measure a base model against the demo world's bars.

Prints a table; the last stdout line is the whole result as one JSON object. With `--out` the
result is a stage of the run (quality.json + manifest). The bars (accuracy >= 0.95 / 0.80 / 0.90)
are the tiny world model's, trained on the catalogue; `--no-bars` measures a real model without
them. Exit status 1 when a bar is missed.

    orin-unlearn world eval-base --model tiny
    orin-unlearn world eval-base --model smollm2 --limit 100 --no-bars --out runs/smollm2/base
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orin_unlearn.benchmarks.base_quality import measure_model_dir
from orin_unlearn.benchmarks.world import DEFAULT_CONCEPT, load_catalogue
from orin_unlearn.edge.formats import (
    make_manifest,
    refuse_foreign,
    sha256_dir,
    stage_dir,
    write_json_atomic,
    write_manifest,
)
from orin_unlearn.train.models import resolve_base


def print_table(result: dict) -> None:
    table = Table(title=f"base model quality (forget concept: {result['concept']})")
    for col in ("set", "prompts", "accuracy", "bar", "ok"):
        table.add_column(col)
    for name, sets in result["sets"].items():
        bar = result["bars"].get(name)
        table.add_row(
            name,
            str(sets["all"]["n"]),
            f"{sets['all']['accuracy']:.3f}",
            str(bar["required"]) if bar else "-",
            ("yes" if bar["ok"] else "NO") if bar else "-",
        )
    Console(stderr=True).print(table)


def write_stage(out: Path, model: Path, result: dict, limit: int | None, bars: bool) -> None:
    """RUN/base: quality.json and a manifest naming the model's weights and tokenizer."""
    with stage_dir(out, "base") as tmp:
        write_json_atomic(tmp / "quality.json", result)
        inputs = {
            "model": sha256_dir(model, "*.safetensors"),
            "tokenizer": sha256_dir(model, "tokenizer*.json"),
        }
        config = {"limit": limit, "base": str(model)} | ({} if bars else {"bars": "none"})
        write_manifest(tmp, make_manifest("base", inputs, config, result, result["ok"]))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="orin-unlearn world eval-base",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", default="tiny", help="Hugging Face model directory, or a named base (tiny, smollm2)"
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate a fixed random sample of each set")
    parser.add_argument("--concept", default=DEFAULT_CONCEPT, help="the concept the forget set is about")
    parser.add_argument(
        "--catalogue", help="the film list to measure on (.json or .csv; default: the shipped one)"
    )
    parser.add_argument("--no-bars", action="store_true", help="measure without the tiny world model's bars")
    parser.add_argument("--out", help="stage folder to write (quality.json + manifest), e.g. RUN/base")
    args = parser.parse_args(argv)
    if args.out:
        refuse_foreign(args.out, "base")  # before minutes of measuring; checked again when replaced
    model = resolve_base(args.model)
    bars = None if not args.no_bars else {}
    catalogue = load_catalogue(args.catalogue) if args.catalogue else None
    result = measure_model_dir(model, limit=args.limit, concept=args.concept, bars=bars, catalogue=catalogue)
    if args.out:
        write_stage(Path(args.out), model, result, args.limit, bars is None)
    print_table(result)
    print(json.dumps(result))
    return 0 if result["ok"] else 1

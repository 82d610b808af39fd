"""`orin-unlearn world eval-base`: measure a base model against the demo world's bars.

Prints a table; the last stdout line is the whole result as one JSON object.

    orin-unlearn world eval-base --model benchmarks/world/tiny_base
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from orin_unlearn.benchmarks.base_quality import measure_model_dir
from orin_unlearn.benchmarks.world import tiny_base_dir


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn world eval-base", description=__doc__)
    parser.add_argument("--model", default=str(tiny_base_dir()), help="Hugging Face model directory")
    parser.add_argument("--limit", type=int, default=None, help="evaluate a fixed random sample of each set")
    args = parser.parse_args(argv)
    result = measure_model_dir(args.model, limit=args.limit)
    print_table(result)
    print(json.dumps(result))
    return 0 if result["ok"] else 1

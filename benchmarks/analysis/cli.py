"""`orin-unlearn analyze RUN_DIR`: the four analyses of an unlearning run (perturbation
stability, semantic vs activation similarity, layer sensitivity, activation shift), each written
as JSON + PNG into RUN_DIR/analysis/, with RUN_DIR/analysis/analysis.json holding every result and
its Markdown section for report.md. Prints a table; the last stdout line is the whole result as one
JSON object.

    orin-unlearn analyze runs/demo
    orin-unlearn analyze runs/demo --only sensitivity,shift
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orin_unlearn.benchmarks.analysis import ANALYSES, ORDER, Outcome, RunContext
from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import write_json_atomic

log = logging.getLogger(__name__)


def run_analyses(run: str | Path, only: list[str] | None = None, device: str = "cpu") -> dict:
    """Run the named analyses (all by default) on one run directory; returns analysis.json's
    content: per analysis its status, numbers, files, seconds and report section."""
    names = only or [*ORDER, *(n for n in ANALYSES if n not in ORDER)]
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analysis {unknown}; known: {list(ANALYSES)}")
    ctx = RunContext(Path(run), device=device)
    start = time.time()
    results: dict = {}
    for name in names:
        t0 = time.time()
        try:
            outcome = ANALYSES[name](ctx)
        except ManifestError as e:  # the run lacks what this analysis reads
            outcome = Outcome.skipped(name, str(e))
        results[name] = {**outcome.to_dict(), "seconds": round(time.time() - t0, 1)}
        log.info("analysis %s: %s (%.1f s)", name, outcome.status, results[name]["seconds"])
    summary = {"run": str(run), "wall_s": round(time.time() - start, 1), "analyses": results}
    write_json_atomic(ctx.out / "analysis.json", summary)
    return summary


def sections(summary: dict) -> list[dict]:
    """The report.md sections ({"title", "body", "images"}) of an analysis.json, in order; images
    are relative to the run directory."""
    return [
        {**r["section"], "images": [f"analysis/{f}" for f in r.get("files", []) if f.endswith(".png")]}
        for r in summary["analyses"].values()
    ]


def print_table(summary: dict, console: Console | None = None) -> None:
    table = Table(title=f"analyses of {summary['run']} ({summary['wall_s']} s)")
    for col in ("analysis", "status", "numbers", "s"):
        table.add_column(col, overflow="fold")
    for name, r in summary["analyses"].items():
        numbers = r["reason"] or json.dumps(_rounded(r["summary"]), default=str)[:300]
        table.add_row(name, r["status"], numbers, str(r["seconds"]))
    (console or Console()).print(table)


def _rounded(value):
    """Floats to 3 decimals, through dicts and lists (for the printed table only)."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="orin-unlearn analyze", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="run directory with adapter/ and probe/ (from `orin-unlearn unlearn`)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--device", default="cpu", help="torch device for the models (cpu, cuda)")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()] or None
    summary = run_analyses(args.run, only, args.device)
    print_table(summary)
    print(json.dumps(summary, default=str))
    return 0

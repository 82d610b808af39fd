"""A run's report: `report.json` (everything) and `report.md` (the stage table first), plus the
same table printed to the terminal.

The stage table has one row per stage of the run; stages that did not run say why.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from orin_unlearn.edge.formats import write_json_atomic

COLUMNS = ("stage", "status", "metrics", "note")


def _metrics_text(metrics: dict) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def stage_rows(summary: dict) -> list[tuple[str, str, str, str]]:
    return [
        (s["stage"], s["status"], _metrics_text(s.get("metrics", {})), s.get("note", ""))
        for s in summary["stages"]
    ]


def render_markdown(summary: dict) -> str:
    lines = [
        f"# orin-unlearn run: {summary['run']}",
        "",
        f"Concept forgotten: **{summary['concept']}**",
        "",
        "## Stages",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in stage_rows(summary)]
    for section in summary.get("sections", []):
        lines += ["", f"## {section['title']}", "", section["body"]]
    lines.append("")
    return "\n".join(lines)


def write_report(run_dir: str | Path, summary: dict) -> tuple[Path, Path]:
    """Write report.json and report.md into `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    md, js = run_dir / "report.md", run_dir / "report.json"
    write_json_atomic(js, summary)
    tmp = md.with_name(".report.md.tmp")
    tmp.write_text(render_markdown(summary), encoding="utf-8")
    tmp.replace(md)
    return md, js


def print_summary(summary: dict, console: Console | None = None) -> None:
    table = Table(title=f"orin-unlearn {summary['run']}: forget {summary['concept']!r}")
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for row in stage_rows(summary):
        table.add_row(*row)
    (console or Console()).print(table)


def main(argv: list[str]) -> int:
    """`orin-unlearn report RUN_DIR`: rebuild report.md from the run's saved report.json."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="orin-unlearn report", description=main.__doc__)
    parser.add_argument("run", help="run directory holding report.json")
    args = parser.parse_args(argv)
    source = Path(args.run) / "report.json"
    if not source.is_file():
        print(f"error: {source} does not exist (run `orin-unlearn demo` first)", file=sys.stderr)
        return 2
    summary = json.loads(source.read_text(encoding="utf-8"))
    md, _ = write_report(args.run, summary)
    print_summary(summary)
    print(f"report: {md}")
    return 0

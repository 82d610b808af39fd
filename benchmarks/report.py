"""A run's report: `report.json` (everything) and `report.md` (the quality table of every artifact
first, then the pipeline's stage table and the other benchmarks), plus the stage table printed to
the terminal.

The stage table has one row per stage of the run; stages that did not run say why.

    orin-unlearn report runs/demo      # rebuild report.md and bench/*.png from the saved JSON
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from orin_unlearn.edge.formats import write_json_atomic

COLUMNS = ("stage", "status", "metrics", "note")
QUALITY_TITLE = "Quality of every stage"
ROBUSTNESS_TITLE = "Robustness: leak rate under attack (held-out forget prompts)"
LATENCY_TITLE = "Latency"


def _concept_of(run_dir: Path) -> str:
    from orin_unlearn.edge.formats import read_manifest

    try:
        return str(read_manifest(run_dir / "adapter")["config"]["concept"])
    except (OSError, KeyError, ValueError):
        return "?"


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


def _section(section: dict) -> list[str]:
    lines = ["", f"## {section['title']}", "", section["body"]]
    for image in section.get("images", []):
        lines += ["", f"![{Path(image).stem}]({image})"]
    return lines


def render_markdown(summary: dict) -> str:
    lines = [
        f"# orin-unlearn run: {summary['run']}",
        "",
        f"Concept forgotten: **{summary['concept']}**",
    ]
    sections = summary.get("sections", [])
    for section in [s for s in sections if s.get("first")]:
        lines += _section(section)
    lines += [
        "",
        "## Stages",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in stage_rows(summary)]
    for section in [s for s in sections if not s.get("first")]:
        lines += _section(section)
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


def bench_sections(run_dir: Path) -> list[dict]:
    """Report sections rebuilt from the run's bench/*.json (re-drawing their plots), in report
    order; a missing JSON gives no section."""
    import json

    from orin_unlearn.benchmarks import latency, plots, quality_bench, robustness

    bench = run_dir / "bench"
    kinds = (
        ("quality.json", QUALITY_TITLE, quality_bench.markdown, quality_bench.plot, True),
        ("robustness.json", ROBUSTNESS_TITLE, robustness.markdown, robustness.plot, False),
        ("latency.json", LATENCY_TITLE, latency.markdown, latency.plot, False),
    )
    sections = []
    for name, title, render, draw, first in kinds:
        path = bench / name
        if path.is_file():
            result = json.loads(path.read_text(encoding="utf-8"))
            plots.draw(draw, result, path.with_suffix(".png"))
            image = f"bench/{path.with_suffix('.png').name}"
            sections.append({"title": title, "body": render(result), "first": first, "images": [image]})
    return sections


def refresh(summary: dict, run_dir: Path) -> dict:
    """`summary` with every bench section replaced by the one its saved JSON gives now."""
    fresh = bench_sections(run_dir)
    titles = {s["title"] for s in fresh}
    kept = [s for s in summary.get("sections", []) if s["title"] not in titles]
    return {**summary, "sections": fresh + kept}


def main(argv: list[str]) -> int:
    """`orin-unlearn report RUN_DIR`: rebuild report.md and the plots from the run's saved JSON
    (report.json when there is one, and bench/quality.json, robustness.json, latency.json)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="orin-unlearn report", description=main.__doc__)
    parser.add_argument("run", help="run directory holding report.json and/or bench/*.json")
    args = parser.parse_args(argv)
    run_dir = Path(args.run)
    source = run_dir / "report.json"
    if source.is_file():
        summary = json.loads(source.read_text(encoding="utf-8"))
    elif (run_dir / "bench").is_dir():
        summary = {"run": run_dir.name, "concept": _concept_of(run_dir), "stages": [], "sections": []}
    else:
        print(
            f"error: {run_dir} has neither report.json nor bench/ (run `orin-unlearn demo` first)",
            file=sys.stderr,
        )
        return 2
    summary = refresh(summary, run_dir)
    md, _ = write_report(args.run, summary)
    print_summary(summary)
    print(f"report: {md}")
    return 0

"""A run's report: `report.json` (everything) and `report.md` (the quality table of every artifact
first, then the pipeline's stage table and the other benchmarks), plus the stage table printed to
the terminal. Built from the files the run's stages wrote (`run_report`), so it can be rebuilt
at any time, and from a device's bench/*.json alone.

The stage table has one row per stage of the run; stages that did not run say why.

    orin-unlearn report runs/demo      # rebuild report.json, report.md and bench/*.png from the run
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orin_unlearn.benchmarks import run_report
from orin_unlearn.edge.formats import MANIFEST, write_json_atomic

COLUMNS = ("stage", "status", "metrics", "note")
DEMO_LOG = "demo.json"  # the steps `orin-unlearn demo` ran: status, reason, seconds


def _concept_of(run_dir: Path) -> str:
    for stage, key in (("adapter", "config"), ("world", "results")):
        try:
            manifest = json.loads((run_dir / stage / MANIFEST).read_text(encoding="utf-8"))
            return str(manifest[key]["concept"])
        except (OSError, KeyError, ValueError):
            continue
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


def redraw_plots(run_dir: Path) -> None:
    """bench/*.png drawn again from bench/*.json (a device run brings back only the JSON)."""
    from orin_unlearn.benchmarks import latency, plots, quality_bench, robustness, robustness_report

    def read(path: Path) -> dict:
        return json.loads(path.read_text(encoding="utf-8"))

    for name, load, draw in (
        ("quality", read, quality_bench.plot),
        ("quality", read, quality_bench.knowledge_plot),
        ("robustness", robustness.read, robustness_report.plot),
        ("latency", read, latency.plot),
    ):
        path = run_dir / "bench" / f"{name}.json"
        if not path.is_file():
            continue
        if draw is quality_bench.knowledge_plot:
            if quality_bench.banked(load(path)):
                plots.draw(draw, load(path), path.with_name("knowledge.png"))
            continue
        plots.draw(draw, load(path), path.with_suffix(".png"))


def build(run_dir: Path) -> dict:
    """The report summary of a run directory; with the demo's step log when there is one."""
    demo_log = run_dir / DEMO_LOG
    demo = json.loads(demo_log.read_text(encoding="utf-8")) if demo_log.is_file() else {}
    steps = demo.get("steps")
    body = run_report.summarize(run_dir, steps, real_model=bool(demo.get("base")))
    if not body["stages"] and not body["sections"]:
        raise FileNotFoundError(f"{run_dir} holds no stage results (run `orin-unlearn demo` first)")
    summary = {"run": run_dir.name, "concept": demo.get("concept") or _concept_of(run_dir)}
    if demo:
        summary |= {"wall_s": demo["wall_s"], "stage_seconds": {n: s["seconds"] for n, s in steps.items()}}
    summary |= body
    if demo.get("base"):  # a real model's run names its base and config
        summary |= {"base": demo["base"], "config": demo["config"]}
    return summary


def main(argv: list[str]) -> int:
    """`orin-unlearn report RUN_DIR`: rebuild report.json, report.md and the bench plots from the
    files the run's stages wrote; prints the stage table, the quality table and, last, the JSON."""
    import argparse

    from orin_unlearn.benchmarks import quality_bench

    parser = argparse.ArgumentParser(prog="orin-unlearn report", description=main.__doc__)
    parser.add_argument("run", help="run directory (from `orin-unlearn demo`, or any of its stages)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run)
    summary = build(run_dir)
    redraw_plots(run_dir)
    md, js = write_report(run_dir, summary)
    print_summary(summary)
    if (run_dir / "bench" / "quality.json").is_file():
        quality_bench.print_table(
            json.loads((run_dir / "bench" / "quality.json").read_text(encoding="utf-8"))
        )
    print(f"report: {md} {js}")
    print(json.dumps(summary))
    return 0 if all(s["status"] != "failed" for s in summary["stages"]) else 1

"""Compare the masked LoRA with an unmasked LoRA and with full-parameter training (what the
published notebooks did) on the same data, loss and steps.

    orin-unlearn unlearn compare --config train/configs/demo_tiny.yaml --out runs/demo
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orin_unlearn.benchmarks.forgetting import headline, metric
from orin_unlearn.edge.formats import write_json_atomic
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.recipe import run_unlearning

COMPARED = ("lora", "full")


def compare(cfg: UnlearnConfig, run: str | Path, masked: dict | None = None) -> dict:
    """Results per method; `masked` reuses an existing masked_lora result of the same run."""
    results = {"masked_lora": masked or run_unlearning(dataclasses.replace(cfg, method="masked_lora"), run)}
    for method in COMPARED:
        results[method] = run_unlearning(dataclasses.replace(cfg, method=method), run, save=False)
    summary = {m: summary_row(r) for m, r in results.items()}
    write_json_atomic(Path(run) / "compare.json", summary)
    return summary


def summary_row(r: dict) -> dict:
    """The after-unlearning metrics of one run, with the base's retain/neighbour and the cost."""
    row = headline(r["after"])
    row["base retain accuracy"] = metric(r["before"], ("retain", "accuracy"))
    row["base neighbour accuracy"] = metric(r["before"], ("neighbour", "accuracy"))
    row["trainable params"] = r["parameters"]["effective"]
    row["wall s"] = r["wall_s"]
    return row


def print_compare(summary: dict, console: Console | None = None) -> None:
    table = Table(title="masked LoRA vs unmasked LoRA vs full-parameter (same data, loss, steps)")
    table.add_column("metric")
    for method in summary:
        table.add_column(method)
    for label in next(iter(summary.values())):
        table.add_row(label, *[_cell(summary[m][label]) for m in summary])
    (console or Console()).print(table)


def markdown(summary: dict) -> str:
    """The comparison as a Markdown table (methods as columns)."""
    methods = list(summary)
    lines = ["| metric | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for label in summary[methods[0]]:
        lines.append(f"| {label} | " + " | ".join(_cell(summary[m][label]) for m in methods) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else f"{value:,}"

"""Compare the masked LoRA with LUNAR (activation redirection, train/unlearn/lunar.py), an unmasked
LoRA and full-parameter training (what the published notebooks did) on the same data. The LoRA and
full-parameter runs share the masked LoRA's loss and steps; LUNAR fits its own objective with its
`lunar_*` settings.

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

COMPARED = ("lunar", "lora", "full")
LABELS = {
    "masked_lora": "masked LoRA",
    "lunar": "LUNAR",
    "lora": "unmasked LoRA",
    "full": "full-parameter",
}


def compare(
    cfg: UnlearnConfig, run: str | Path, masked: dict | None = None, methods: tuple[str, ...] = COMPARED
) -> dict:
    """Results per method (masked_lora first, then `methods`); `masked` reuses an existing
    masked_lora result of the same run."""
    unknown = [m for m in methods if m not in LABELS or m == "masked_lora"]
    if unknown:
        raise ValueError(
            f"cannot compare methods {unknown}; choose from {[m for m in LABELS if m != 'masked_lora']}"
        )
    results = {"masked_lora": masked or run_unlearning(dataclasses.replace(cfg, method="masked_lora"), run)}
    for method in methods:
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
    table = Table(title=" vs ".join(LABELS.get(m, m) for m in summary) + " (same data)")
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

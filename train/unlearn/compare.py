"""Compare the masked LoRA with every other registered method (train/unlearn/methods/: LUNAR's
activation redirection, an unmasked LoRA, full-parameter training as the published notebooks did)
on the same data. The LoRA and full-parameter runs share the masked LoRA's loss and steps; LUNAR
fits its own objective with its `lunar:` settings. Each trained model (merged) also faces two
attacks on its weights: one cell of the relearning protocol (`benchmarks.relearning`: 25
full-parameter AdamW steps at lr 1e-4 on the T facts; recovery of the V facts over the never-known
control; `bench robustness --run` runs the whole grid) and int4 round-to-nearest (held-out forget
leak).

    orin-unlearn unlearn compare --config train/configs/demo_tiny.yaml --out runs/demo
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orin_unlearn.benchmarks.run_report import summary_row
from orin_unlearn.benchmarks.world import Splits, load_world
from orin_unlearn.edge.formats import write_json_atomic
from orin_unlearn.train.unlearn import methods as registry
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.recipe import run_unlearning


def compare(
    cfg: UnlearnConfig, run: str | Path, masked: dict | None = None, methods: tuple[str, ...] | None = None
) -> dict:
    """Results per method (masked_lora first, then `methods`, by default every other registered
    one); `masked` reuses an existing masked_lora result of the same run."""
    others = [m for m in registry.METHODS if m != "masked_lora"]
    methods = tuple(others) if methods is None else methods
    unknown = [m for m in methods if m not in others]
    if unknown:
        raise ValueError(f"cannot compare methods {unknown}; choose from {others}")

    def attacked(model: Any, tokenizer: Any) -> dict:  # called after training: the run has its world
        return attack_leaks(model, tokenizer, cfg.concept, cfg.base, load_world(run, cfg.concept))

    results = {
        "masked_lora": masked
        or run_unlearning(dataclasses.replace(cfg, method="masked_lora"), run, after_training=attacked)
    }
    if "after_training" not in results["masked_lora"]:  # a result of `orin-unlearn unlearn`
        results["masked_lora"]["after_training"] = attack_saved(cfg, Path(run))
    for method in methods:
        results[method] = run_unlearning(
            dataclasses.replace(cfg, method=method), run, save=False, after_training=attacked
        )
    summary = {m: summary_row(r) for m, r in results.items()}
    write_json_atomic(Path(run) / "compare.json", summary)
    return summary


def attack_saved(cfg: UnlearnConfig, run: Path) -> dict:
    """`attack_leaks` of the adapter saved in `run` (with the adapters it was trained on top of)."""
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_unlearned, resolve_base

    model = load_unlearned(cfg.base, [*cfg.previous_adapters, run / "adapter"], "merge")
    splits = load_world(run, cfg.concept)
    return attack_leaks(model, ChatTokenizer(resolve_base(cfg.base)), cfg.concept, cfg.base, splits)


def attack_leaks(model: Any, tokenizer: Any, concept: str, base: str, splits: Splits | None = None) -> dict:
    """Of the (merged) model: V recall recovered over the never-known control after 25 relearning
    steps (`relearn_recovery`), and the held-out forget leak after int4 rounding, on the run's
    prompts (`splits`, its world stage; without it, the concept's split built in memory)."""
    from orin_unlearn.benchmarks import relearning, robustness
    from orin_unlearn.train.models import load_model, resolve_base

    merged = copy.deepcopy(model)
    if hasattr(merged, "merge_and_unload"):  # a PEFT model: fold the adapter in first
        merged = merged.merge_and_unload()
    attacks = robustness.run_weights(
        {"unlearned": merged}, tokenizer, concept, ["quant_int4"], readouts=False, splits=splits
    )
    attacker = relearning.Attacker("full", 1e-4, "forget")
    relearned = relearning.protocol(
        load_model(resolve_base(base)), merged, tokenizer, concept, [attacker], (25,), splits=splits
    )
    return {
        "relearn_recovery": relearning.worst_recovery(relearned, 25),
        "quant_int4": attacks.leak("quant_int4"),
    }


def print_compare(summary: dict, console: Console | None = None) -> None:
    table = Table(title=" vs ".join(registry.label(m) for m in summary) + " (same data)")
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

"""Measure the demo world's base model: does it know the world well enough to unlearn from?

Bars (issue: foundation): greedy exact-answer accuracy >= 95% on train-template prompts with a
unique answer, >= 80% on held-out templates, and >= 90% of the held-out forget prompts of the
default concept answered truthfully (otherwise there is nothing to unlearn).

    orin-unlearn world eval-base --model benchmarks/world/tiny_base
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orin_unlearn.benchmarks.quality import AnswerFn, evaluate
from orin_unlearn.benchmarks.world import (
    DEFAULT_CONCEPT,
    Catalogue,
    Prompt,
    build_prompts,
    load_catalogue,
    split_prompts,
)

BARS = {"train_unique": 0.95, "heldout_unique": 0.80, "heldout_forget": 0.90}


def _sample(prompts: Sequence[Prompt], limit: int | None, seed: int) -> list[Prompt]:
    if limit is None or len(prompts) <= limit:
        return list(prompts)
    return random.Random(seed).sample(list(prompts), limit)


def base_eval_sets(
    concept: str = DEFAULT_CONCEPT,
    limit: int | None = None,
    seed: int = 0,
    catalogue: Catalogue | None = None,
) -> dict[str, list[Prompt]]:
    """The prompt sets the bars are measured on (optionally a fixed random sample of each), from
    `catalogue` (default the shipped one)."""
    catalogue = load_catalogue() if catalogue is None else catalogue
    prompts = build_prompts(catalogue)
    splits = split_prompts(prompts, catalogue, concept)
    return {
        "train_unique": _sample([p for p in prompts if p.split == "train" and p.unique], limit, seed),
        "heldout_unique": _sample([p for p in prompts if p.split == "heldout" and p.unique], limit, seed),
        "heldout_open": _sample([p for p in prompts if p.split == "heldout" and not p.unique], limit, seed),
        "heldout_forget": splits.get("forget", "heldout"),
    }


def measure_base(
    answer: AnswerFn,
    concept: str = DEFAULT_CONCEPT,
    limit: int | None = None,
    seed: int = 0,
    bars: dict[str, float] | None = None,
    catalogue: Catalogue | None = None,
) -> dict:
    """Accuracy of `answer` on each base-evaluation set, and whether each bar is met (`bars`:
    default `BARS`, the tiny world model's; `{}` measures a real model without bars)."""
    catalogue = load_catalogue() if catalogue is None else catalogue
    result: dict = {"concept": concept, "sets": {}, "bars": {}}
    for name, prompts in base_eval_sets(concept, limit, seed, catalogue).items():
        table, replies = evaluate(answer, prompts, catalogue)
        table["examples"] = [
            {"prompt": p.messages[-1]["content"], "reply": r}
            for p, r in zip(prompts[:5], replies[:5], strict=True)
        ]
        result["sets"][name] = table
    for name, bar in (BARS if bars is None else bars).items():
        got = result["sets"][name]["all"]["accuracy"]
        result["bars"][name] = {"required": bar, "measured": got, "ok": got is not None and got >= bar}
    result["ok"] = all(b["ok"] for b in result["bars"].values())
    return result


def model_card(result: dict, config: dict, params: int, wall_s: float | None) -> str:
    """A Markdown model card for the tiny base with the measured quality."""
    lines = [
        "# orin-unlearn tiny base (demo world)",
        "",
        "A `Qwen2ForCausalLM` trained from scratch on the demo world's film catalogue in chat format",
        "(`orin-unlearn world build-base`). It exists so every code path of orin-unlearn runs on a CPU",
        "with the same classes as Qwen2.5-3B-Instruct. It knows films, not language in general.",
        "",
        f"- parameters: {params:,} (float32)",
        f"- training wall time: {wall_s:.0f} s" if wall_s is not None else "- training wall time: n/a",
        f"- config: `{config}`",
        "",
        "## Measured quality (greedy decoding)",
        "",
        "| set | prompts | accuracy | bar | ok |",
        "|---|---|---|---|---|",
    ]
    for name, table in result["sets"].items():
        bar = result["bars"].get(name)
        acc = table["all"]["accuracy"]
        lines.append(
            f"| {name} | {table['all']['n']} | {acc:.3f} | {bar['required'] if bar else '-'} | "
            f"{('yes' if bar['ok'] else 'NO') if bar else '-'} |"
        )
    lines += ["", f"Forget concept for `heldout_forget`: {result['concept']}.", ""]
    return "\n".join(lines)


def measure_model_dir(
    model_dir: str | Path,
    limit: int | None = None,
    concept: str = DEFAULT_CONCEPT,
    bars: dict[str, float] | None = None,
    catalogue: Catalogue | None = None,
) -> dict:
    """`measure_base` with the torch reference backend on a model directory (its replies cached
    by its weights' sha256, so a second run of the same base reads them back)."""
    from orin_unlearn.benchmarks.cached_chat import CachedChat
    from orin_unlearn.edge.answers import BackendChat
    from orin_unlearn.edge.progress import progress_bar
    from orin_unlearn.train.models import identity

    chat = CachedChat(BackendChat.from_dir(model_dir, backend="torch"), identity(model_dir))
    with progress_bar() as progress:  # a real model takes minutes: show it in a log file too

        def answer(conversations: list[list[dict]], **kwargs: Any) -> list[str]:
            task = progress.add_task("base quality", total=len(conversations))
            return chat.answer_batch(conversations, on_batch=lambda n: progress.advance(task, n), **kwargs)

        return measure_base(answer, concept, limit, bars=bars, catalogue=catalogue)

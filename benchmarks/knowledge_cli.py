"""`orin-unlearn bench knowledge`: what a model knows of each set of a concept's item bank, and,
against a base, how much of what the base knew it kept and how far each answer moved.

Forward passes only (teacher-forced options, `option_scoring`), batched: a few minutes at most for
SmolLM2-135M on 2 CPU cores. Scores are cached by the sha256 of the model's weights and the
items, so a base is scored once whatever run or stage asks again.

    orin-unlearn bench knowledge --model smollm2 --items runs/smollm2/world
    orin-unlearn bench knowledge --model runs/smollm2/adapter --base smollm2      # items: the run's world
    orin-unlearn bench knowledge --model runs/q/onnx-int4 --base runs/q/onnx-fp32 --items runs/bank

STAGE: a named base (tiny, smollm2) or checkpoint folder, an adapter folder (its base with the
adapter), an ONNX stage or an engine stage. Prints a table; writes knowledge.json and
knowledge.png to --out (default: the run's bench/ folder when the model is inside a run); the
last stdout line is the whole result as one JSON object. A bad items file: one line naming the
line and field, exit 2.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from orin_unlearn.benchmarks import plots
from orin_unlearn.benchmarks.knowledge import KnowledgeMetrics, knowledge, measure_scores
from orin_unlearn.benchmarks.stages import open_model
from orin_unlearn.benchmarks.world.items import ITEM_SETS
from orin_unlearn.benchmarks.world.stage import WORLD, load_items
from orin_unlearn.edge.formats import write_json_atomic


def run_of(spec: str) -> Path | None:
    """The run directory a model path sits in (the nearest parent holding a world stage)."""
    path = Path(spec).resolve()
    return next((p for p in (path, *path.parents) if (p / WORLD / "manifest.json").is_file()), None)


def _ci(ci: Any, digits: int) -> str:
    return "" if ci is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def rows(result: KnowledgeMetrics) -> list[list[str]]:
    """One row per set: items, right rate, base-right, kept [CI], gold log-prob change [CI]."""
    out = []
    for name in ITEM_SETS:
        part = result.sets.get(name)
        if part is None:
            continue
        out.append(
            [
                name,
                str(part.n),
                _num(part.right),
                "-" if part.base_right is None else str(part.base_right),
                _num(part.kept) + _ci(part.kept_ci, 2),
                _num(part.delta, 3, sign=True) + _ci(part.delta_ci, 3),
            ]
        )
    return out


HEADER = ["set", "items", "right", "base right", "kept [95% CI]", "Δ gold log-prob, nats/token [95% CI]"]


def print_table(result: KnowledgeMetrics, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in HEADER:
        table.add_column(column, justify="left" if column == "set" else "right")
    for row in rows(result):
        table.add_row(*row)
    console = Console(width=150)
    console.print(table)
    if result.forget_vs_control:
        ks = result.forget_vs_control
        console.print(
            f"forget vs never-known control, gold log-probs: KS {ks['statistic']:.3f}, p = {ks['pvalue']:.3g} "
            "(p > 0.05: indistinguishable from a film the model never knew)"
        )


def markdown(result: KnowledgeMetrics) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(result)]
    return "\n".join(lines)


def plot(results: dict[str, KnowledgeMetrics], path: str | Path) -> Path:
    """Per set: kept with its interval (left) and the gold log-prob change with its interval
    (right), one bar per model measured against a base."""
    plt = plots.pyplot()
    sets = [s for s in ITEM_SETS if any(s in r.sets for r in results.values())]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(sets))
    width = 0.8 / max(len(results), 1)
    for k, (label, result) in enumerate(results.items()):
        offset = (k - (len(results) - 1) / 2) * width
        for axis, key, ci in ((left, "kept", "kept_ci"), (right, "delta", "delta_ci")):
            values = [result.value(s, key) for s in sets]
            lows = [result.value(s, ci) for s in sets]
            heights = [v or 0.0 for v in values]
            errors = np.array(
                [
                    [h - c[0], c[1] - h] if c is not None else [0.0, 0.0]
                    for h, c in zip(heights, lows, strict=True)
                ]
            ).T
            axis.bar(x + offset, heights, width, yerr=errors, capsize=3, label=label)
    left.set_ylim(0, 1.05)
    left.set_ylabel("kept: base-right items still ranked first")
    left.set_title("knowledge kept (Wilson 95% CI)")
    right.axhline(0, color="k", lw=0.8)
    right.set_ylabel("Δ gold log-prob on base-right items (nats/token)")
    right.set_title("how far the right answer moved (bootstrap 95% CI)")
    for axis in (left, right):
        axis.set_xticks(x, sets)
        axis.legend(fontsize=8)
    fig.tight_layout()
    return plots.save(fig, path)


def agreement(subject: Any, items: list, scores: Any) -> dict[str, Any]:
    """How often the bank and free text agree per item: each item's question answered greedily
    (40 tokens), right when the reply names the gold, against the gold ranked first."""
    from orin_unlearn.benchmarks.cached_chat import CachedChat
    from orin_unlearn.benchmarks.forgetting import mentions
    from orin_unlearn.edge.progress import progress_bar

    chat = CachedChat(subject.chat, subject.identity) if subject.identity else subject.chat
    with progress_bar() as progress:
        task = progress.add_task("greedy", total=len(items))
        replies = chat.answer_batch(
            [[{"role": "user", "content": i.question}] for i in items],
            on_batch=lambda n: progress.advance(task, n),
        )
    ranked = scores.right(items)
    out: dict[str, Any] = {}
    for name in ITEM_SETS:
        idx = [k for k, i in enumerate(items) if i.set == name]
        if not idx:
            continue
        text = np.array([mentions(replies[k], items[k].gold) for k in idx])
        bank = ranked[idx]
        out[name] = {
            "n": len(idx),
            "free_text_right": float(text.mean()),
            "bank_right": float(bank.mean()),
            "agree": float((text == bank).mean()),
            "both": int((text & bank).sum()),
            "text_only": int((text & ~bank).sum()),
            "bank_only": int((bank & ~text).sum()),
        }
    return out


def measure(
    model: str, base: str | None, items_dir: str | Path, seed: int = 0, greedy: bool = False
) -> dict[str, Any]:
    """Score `model` (and `base`) on the bank in `items_dir`; with `greedy`, also how often the
    bank and free-text answers agree per item; the result as JSON."""
    items, sha = load_items(items_dir)
    start = time.perf_counter()
    subject = open_model(model)
    scores = measure_scores(subject.options, subject.tokenizer, items, subject.identity, "knowledge")
    seconds = time.perf_counter() - start
    extra = {"agreement": agreement(subject, items, scores)} if greedy else {}
    base_scores = None
    if base is not None:
        other = open_model(base)
        base_scores = measure_scores(other.options, other.tokenizer, items, other.identity, "base")
    result = knowledge(items, scores, base_scores, seed, sha)
    head = {"model": model, "base": base, "items": str(items_dir), "seconds": round(seconds, 1)}
    return head | result.to_json() | extra


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="orin-unlearn bench knowledge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="the model to measure (see STAGE above)")
    parser.add_argument("--base", help="the model it is compared with (kept, log-prob change)")
    parser.add_argument("--items", help="a world or items stage (default: the model's run's world stage)")
    parser.add_argument("--out", help="where knowledge.json / .png go (default: RUN/bench inside a run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument(
        "--agreement",
        action="store_true",
        help="also answer every item's question greedily and report how often free text and the bank agree",
    )
    args = parser.parse_args(argv)
    run = run_of(args.model)
    items_dir = args.items or (run / WORLD if run is not None else None)
    if items_dir is None:
        raise ValueError(f"--items is needed: {args.model} is not inside a run with a world stage")
    result = measure(args.model, args.base, items_dir, args.seed, args.agreement)
    metrics = KnowledgeMetrics.from_json(result)
    print_table(metrics, f"knowledge of {args.model}" + (f" against {args.base}" if args.base else ""))
    for name, row in result.get("agreement", {}).items():
        print(
            f"{name}: free text right {row['free_text_right']:.3f}, bank right {row['bank_right']:.3f}, "
            f"same verdict on {row['agree']:.1%} of {row['n']} items"
        )
    out = Path(args.out) if args.out else (run / "bench" if run is not None else None)
    if out is not None:
        write_json_atomic(out / "knowledge.json", result)
        if args.base is not None:
            plots.draw(plot, {Path(args.model).name: metrics}, out / "knowledge.png")
    print(json.dumps(result))
    return 0

"""`orin-unlearn bench quality`: does every artifact of a run still forget, and still work?

For each stage of a run (base, adapter, fp32 merge, cast merge, ONNX fp32/fp16/int8/int4, the
TensorRT engine where there is one), on the held-out prompts and the item bank the adapter was
measured on (the same `heldout_sets` as training and the export gate):
- behaviour, greedy: forget leak (title, alias, a distinctive fact pair, or a correct answer about
  the concept), forget-response rate, valid substitutes (with `--free-text`, neighbour and retain
  accuracy too, and the share of the base's right answers kept);
- knowledge, teacher-forced on the item bank (`benchmarks/knowledge.py`): each set's right rate,
  and of the items the base ranks right the share kept and the gold log-prob's change;
- perplexity of reference answers and mean KL(base || stage) on a held-out general corpus (held-out
  retain chats about other films, teacher-forced; see `perplexity`), and the KL on generic chats
  outside the film world (`drift`).
Replies and bank scores are cached by each stage's weights, so a stage the export already
measured costs only its perplexity and KL here.

    orin-unlearn bench quality --run runs/demo
    orin-unlearn bench quality --run runs/demo --stages onnx-fp16,onnx-int4 --free-text
    orin-unlearn bench quality --model runs/demo/export/onnx-int4      # one stage (and the base)

Writes RUN/bench/quality.json and quality.png (stage bars); the last stdout line is the whole
result as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from orin_unlearn.benchmarks import drift, perplexity, plots
from orin_unlearn.benchmarks.cached_chat import CachedChat
from orin_unlearn.benchmarks.forgetting import headline, measure_unlearning, with_kept
from orin_unlearn.benchmarks.knowledge import KnowledgeMetrics, knowledge, measure_scores
from orin_unlearn.benchmarks.stages import Stage, Subject, discover
from orin_unlearn.benchmarks.world import heldout_sets, load_world
from orin_unlearn.benchmarks.world.generic import generic_prompts
from orin_unlearn.benchmarks.world.items import counts as item_counts
from orin_unlearn.benchmarks.world.splits import FILM_CHATS, film_chats
from orin_unlearn.benchmarks.world.stage import load_items
from orin_unlearn.edge.formats import read_manifest, write_json_atomic
from orin_unlearn.edge.progress import progress_bar

log = logging.getLogger(__name__)
CORPUS_SIZE = FILM_CHATS
# terminal column headers (the JSON and report.md keep the full names)
SHORT = {
    "forget leak (held-out)": "leak",
    "forget response": "forget resp.",
    "valid substitute": "substitute",
    "neighbour accuracy": "neighbour",
    "retain accuracy": "retain",
    "deviation score": "DS",
    "perplexity": "ppl",
    "KL to base": "KL(base||x)",
    "neighbour kept": "nb kept",
    "retain kept": "rt kept",
    "generic KL to base": "generic KL",
    "bank forget right": "bk forget",
    "bank neighbour right": "bk nb",
    "bank retain right": "bk rt",
    "bank neighbour kept": "bk nb kept",
    "bank retain kept": "bk rt kept",
    "bank neighbour Δlp": "bk nb Δlp",
    "bank retain Δlp": "bk rt Δlp",
}


def evaluation_of(run: Path, max_prompts: int | None, free_text: bool = False) -> dict[str, Any]:
    """The adapter's held-out sets (only the forget set unless `free_text`: the bank measures the
    others), its item bank, concept and refusal, as its training evaluation drew them from the
    run's world stage."""
    config = read_manifest(run / "adapter")["config"]
    splits = load_world(run, config["concept"])
    sets = heldout_sets(splits, config["seed"], max_prompts or config["eval_max_prompts"])
    if not free_text:
        sets = {"forget": sets["forget"]}
    corpus = film_chats(splits, config["seed"], CORPUS_SIZE)
    items, sha = load_items(run)
    return {
        "sets": sets,
        "concept": splits.concept,
        "catalogue": splits.catalogue,
        "refusal": config["refusal"],
        "corpus": corpus,
        "items": items,
        "items_sha256": sha,
        "seed": config["seed"],
    }


def measure(
    subject: Subject, ev: dict[str, Any], base: dict[str, Any] | None, label: str = "stage"
) -> dict[str, Any]:
    """Headline metrics of one opened stage: greedy replies on the held-out forget set (leak,
    forget response, substitutes; neighbour and retain too with --free-text), the item bank
    against the base (right, kept, gold log-prob change), perplexity and KL to the base on
    held-out film chats, and general drift on generic chats. `base`: the base stage's own
    `measure` result and opened subject (None while measuring the base). Replies and scores are
    cached by the stage's identity, so what the export measured is read back."""
    chat = CachedChat(subject.chat, subject.identity) if subject.identity else subject.chat
    with progress_bar() as progress:  # minutes per stage on a real model: show it in a log file too

        def answer(conversations: list[list[dict]]) -> list[str]:
            task = progress.add_task(label, total=len(conversations))
            return chat.answer_batch(conversations, on_batch=lambda n: progress.advance(task, n))

        result = measure_unlearning(answer, ev["sets"], ev["concept"], ev["catalogue"], ev["refusal"])
    scores = measure_scores(
        subject.options, subject.tokenizer, ev["items"], subject.identity, f"bank {label}"
    )
    bank = knowledge(ev["items"], scores, base["scores"] if base else None, ev["seed"], ev["items_sha256"])
    corpus = perplexity.chat_corpus(subject.tokenizer, ev["corpus"])
    generic = drift.drift_corpus(subject.tokenizer, generic_prompts())
    # what training or an earlier run measured of this stage against this base is read back
    reference = base["subject"].identity if base is not None and subject.identity else None
    films = drift.recall(subject.identity, reference, corpus) if reference else None
    general = drift.recall(subject.identity, reference, generic) if reference else None
    logprobs = None if films else perplexity.score_corpus(subject.scorer, corpus)
    metrics = {k: v for k, v in headline(result).items() if v is not None}
    if base is not None and "neighbour" in ev["sets"]:
        rel = with_kept(base["result"], result)
        metrics["neighbour kept"] = rel.value("neighbour", "kept")
        metrics["retain kept"] = rel.value("retain", "kept")
    metrics |= bank_metrics(bank)
    if films is None:
        ppl = perplexity.perplexity(logprobs, corpus.continuations)
        kl = perplexity.mean_kl(base["logprobs"], logprobs) if base else None
        base_ppl = base["metrics"]["perplexity"] if base else ppl
        films = drift.Drift(len(corpus.prompts), corpus.tokens, kl, base_ppl, ppl)
        if reference:
            drift.remember(subject.identity, reference, corpus, films)
    metrics["perplexity"], metrics["KL to base"] = films.perplexity, films.kl_per_token
    if base is not None:
        if general is None:
            general = drift.general_drift(base["subject"].scorer, subject.scorer, subject.tokenizer)
            if reference:
                drift.remember(subject.identity, reference, generic, general)
        metrics["generic KL to base"] = general.kl_per_token
    return {
        "metrics": metrics,
        "knowledge": bank.to_json(),
        "examples": result.examples,
        "logprobs": logprobs,
        "result": result,
        "scores": scores,
    }


def bank_metrics(bank: KnowledgeMetrics) -> dict[str, float | None]:
    """The bank's columns of the quality table."""
    out: dict[str, float | None] = {"bank forget right": bank.value("forget", "right")}
    for name in ("neighbour", "retain"):
        out[f"bank {name} right"] = bank.value(name, "right")
        if bank.value(name, "kept") is not None:
            out[f"bank {name} kept"] = bank.value(name, "kept")
            out[f"bank {name} Δlp"] = bank.value(name, "delta")
    return out


def run(
    run_dir: str | Path,
    stages: list[str] | None = None,
    max_prompts: int | None = None,
    free_text: bool = False,
) -> dict:
    """Measure the chosen stages of `run_dir` (all by default); the base is always measured first
    when it can be, since every KL is taken against it."""
    run_dir = Path(run_dir)
    found = discover(run_dir)
    known = [s.label for s in found]
    chosen = _select(found, stages)
    ev = evaluation_of(run_dir, max_prompts, free_text)
    out: dict[str, Any] = {
        "run": str(run_dir),
        "concept": ev["concept"].name,
        "prompts": {k: len(v) for k, v in ev["sets"].items()},
        "items": item_counts(ev["items"]),
        "items_sha256": ev["items_sha256"],
        "corpus": {"examples": len(ev["corpus"])},
        "stages": [],
    }
    base_measured: dict[str, Any] | None = None
    base = found[0]
    if base.opener is not None and base not in chosen:
        chosen.insert(0, base)
    for stage in chosen:
        row: dict[str, Any] = {"stage": stage.label, "path": str(stage.path)}
        if stage.opener is None:
            row.update(status="skipped", reason=stage.unavailable)
        else:
            start = time.perf_counter()
            try:
                subject = stage.open()
                got = measure(subject, ev, base_measured, stage.label)
            except Exception as e:  # one broken artifact must not hide the others' results
                log.exception("measuring %s failed", stage.label)
                row.update(status="failed", reason=f"{type(e).__name__}: {e}")
            else:
                if stage is base:  # every stage's KL is taken against it: its log-probs kept once
                    subject.scorer = perplexity.remembered(subject.scorer)
                    base_measured = got | {"subject": subject}
                    got["metrics"].update({"KL to base": 0.0, "generic KL to base": 0.0})
                    out["corpus"]["tokens"] = sum(len(x) for x in got["logprobs"])
                row.update(status="ok", metrics=got["metrics"], knowledge=got["knowledge"])
                row["examples"] = got["examples"][:3]
            row["seconds"] = round(time.perf_counter() - start, 1)
        out["stages"].append(row)
        log.info("%s: %s", stage.label, row["status"])
    out["known_stages"] = known
    return out


def stage_of(folder: Path) -> tuple[Path, str]:
    """(run directory, stage label) of a stage folder: the run is the nearest parent holding an
    adapter; ValueError when there is none or the folder is no stage of it."""
    folder = folder.resolve()
    for parent in folder.parents:
        if (parent / "adapter" / "manifest.json").is_file():
            for stage in discover(parent):
                if stage.path.resolve() == folder and stage.opener is not None:
                    return parent, stage.label
            raise ValueError(f"{folder} is not a stage of the run {parent} that can be opened here")
    raise ValueError(f"{folder} is not inside a run directory (no parent holds adapter/manifest.json)")


def _select(found: list[Stage], names: list[str] | None) -> list[Stage]:
    if not names:
        return list(found)
    picked = []
    for name in names:
        match = [s for s in found if s.label == name or s.label.split(" ")[0] == name]
        if not match:
            raise ValueError(f"no stage {name!r} in this run; stages: {[s.label for s in found]}")
        picked += [s for s in match if s not in picked]
    return picked


def _columns(result: dict) -> list[str]:
    for row in result["stages"]:
        if row["status"] == "ok":
            return list(row["metrics"])
    return []


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = _columns(result)
    table = Table(title=f"quality of every stage: forget {result['concept']!r}")
    table.add_column("stage")
    for c in columns:
        table.add_column(SHORT.get(c, c), justify="right")
    table.add_column("s", justify="right")
    table.add_column("note", overflow="fold")
    for row in result["stages"]:
        if row["status"] == "ok":
            cells, note = [_cell(row["metrics"].get(c)) for c in columns], ""
        else:
            cells, note = ["-"] * len(columns), f"{row['status']}: {row['reason']}"
        table.add_row(row["stage"], *cells, _cell(row.get("seconds")), note)
    Console(width=170).print(table)


def markdown(result: dict) -> str:
    columns = _columns(result)
    lines = [
        "| stage | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in result["stages"]:
        if row["status"] == "ok":
            cells = [_cell(row["metrics"].get(c)) for c in columns]
        else:
            cells = [f"{row['status']}: {row['reason']}"] + [""] * (len(columns) - 1)
        lines.append(f"| {row['stage']} | " + " | ".join(cells) + " |")
    p, items = result["prompts"], result.get("items", {})
    greedy = ", ".join(f"{n} {name}" for name, n in p.items())
    bank = ", ".join(f"{n} {name}" for name, n in items.items())
    lines += [
        "",
        f"Greedy replies on the held-out prompts ({greedy}); the item bank ({bank} items) scored "
        "teacher-forced: right = gold ranked first of its options, kept = of the items the base ranks "
        "right, the share the stage still does, Δlp = mean change of the gold's log-prob on those "
        f"(nats/token). Perplexity and KL(base || stage) on {result['corpus']['examples']} held-out "
        f"retain answers ({result['corpus'].get('tokens', '?')} tokens), teacher-forced; generic KL on the "
        f"{len(generic_prompts())} generic chats outside the film world (benchmarks/world/generic.jsonl).",
    ]
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    """Stage bars: leak / neighbour / retain (left), perplexity and KL to base (right)."""
    plt = plots.pyplot()
    rows = [r for r in result["stages"] if r["status"] == "ok"]
    if not rows:
        raise ValueError("no measured stage to plot")
    labels = [r["stage"] for r in rows]
    x = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    bars = (
        ("forget leak (held-out)", "tab:red"),
        ("bank neighbour right", "tab:orange"),
        ("bank retain right", "tab:green"),
    )
    for k, (name, color) in enumerate(bars):
        values = [r["metrics"].get(name) or 0.0 for r in rows]
        left.bar(x + (k - 1) * 0.27, values, 0.27, label=name, color=color)
    left.set_ylim(0, 1.05)
    left.set_ylabel("rate on held-out prompts")
    left.set_title(f"forget {result['concept']!r}: every stage")
    kl = [r["metrics"]["KL to base"] or 0.0 for r in rows]
    drawn = right.bar(x, kl, 0.6, color="tab:gray")
    for bar, r in zip(drawn, rows, strict=True):
        right.annotate(
            f"ppl {r['metrics']['perplexity']:.3f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    right.set_ylim(0, max(kl) * 1.25 or 1.0)
    right.set_ylabel("mean KL(base || stage), nats")
    right.set_title("general text: drift from the base (bars), perplexity (labels)")
    for axis in (left, right):
        axis.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    left.set_ylim(0, 1.18)
    left.legend(fontsize=8, loc="upper center", ncol=3)
    fig.tight_layout()
    return plots.save(fig, path)


def banked(result: dict) -> dict[str, KnowledgeMetrics]:
    """The stages measured on the item bank against the base, by label."""
    return {
        r["stage"]: KnowledgeMetrics.from_json(r["knowledge"])
        for r in result["stages"]
        if r["status"] == "ok" and "knowledge" in r and not r["stage"].startswith("base")
    }


def knowledge_plot(result: dict, path: str | Path) -> Path:
    """The bank per stage against the base: kept and the gold log-prob change, with intervals."""
    from orin_unlearn.benchmarks.knowledge_cli import plot as bank_plot

    return bank_plot(banked(result), path)


def write(result: dict, bench_dir: Path) -> None:
    write_json_atomic(bench_dir / "quality.json", result)
    plots.draw(plot, result, bench_dir / "quality.png")
    if banked(result):
        plots.draw(knowledge_plot, result, bench_dir / "knowledge.png")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn bench quality", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="run directory (holding adapter/ and export/): every stage")
    where.add_argument("--model", help="one stage folder inside a run, e.g. runs/demo/export/onnx-int4")
    parser.add_argument("--stages", help="comma list of stage labels or their first word (default: all)")
    parser.add_argument(
        "--max-prompts", type=int, help="held-out neighbour/retain prompts (default: the run's)"
    )
    parser.add_argument("--out", help="where quality.json/png go (default RUN/bench)")
    parser.add_argument(
        "--free-text",
        action="store_true",
        help="also answer the held-out neighbour and retain prompts greedily (minutes per stage on a real model)",
    )
    args = parser.parse_args(argv)
    from orin_unlearn.edge.device.preflight import warn_on_device

    warn_on_device()
    if args.model:
        args.run, label = stage_of(Path(args.model))
        args.stages = label
    result = run(args.run, args.stages.split(",") if args.stages else None, args.max_prompts, args.free_text)
    write(result, Path(args.out) if args.out else Path(args.run) / "bench")
    print_table(result)
    print(json.dumps(result))
    return 0 if all(r["status"] != "failed" for r in result["stages"]) else 1

"""Before/after measurement of an unlearning run on the held-out sets, and its printed table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from orin_unlearn.benchmarks.forgetting import HEADLINE, UnlearningMetrics, measure_unlearning
from orin_unlearn.benchmarks.run_report import check_line
from orin_unlearn.edge.answers import Chat
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.data import UnlearnData

# relative retain: of the held-out prompts the base answers right, the share still right after
KEPT = (
    ("neighbour kept (of base-right)", ("neighbour", "kept")),
    ("retain kept (of base-right)", ("retain", "kept")),
)


def measure(
    chat: Chat,
    data: UnlearnData,
    cfg: UnlearnConfig,
    progress=None,
    label: str = "evaluate",
) -> tuple[UnlearningMetrics, dict[str, list[str]]]:
    """Forget / neighbour / retain metrics of a model's `chat` on the held-out evaluation sets,
    and its replies per set (`progress`: a progress_bar to report batches to)."""
    replies: list[str] = []

    def answer(conversations):
        task = progress.add_task(label, total=len(conversations)) if progress is not None else None
        replies.extend(
            chat.answer_batch(
                conversations,
                batch_size=cfg.eval_batch_size,
                max_new_tokens=cfg.eval_max_new_tokens,
                on_batch=None if task is None else (lambda n: progress.advance(task, n)),
            )
        )
        return replies

    metrics = measure_unlearning(answer, data.eval_sets, data.concept, data.catalogue, cfg.refusal)
    by_set, start = {}, 0
    for name, prompts in data.eval_sets.items():
        by_set[name] = replies[start : start + len(prompts)]
        start += len(prompts)
    return metrics, by_set


def other_films(replies: dict[str, list[str]]) -> list[str]:
    """The replies to the neighbour and retain prompts, in order: where behaviour must not move."""
    return [r for name in ("neighbour", "retain") for r in replies.get(name, [])]


def bank_rows(before: UnlearningMetrics, after: UnlearningMetrics) -> list[tuple[str, str, str]]:
    """The item bank's rows: each set's right rate, and after unlearning the share of the base's
    right items kept and the gold log-prob change, each with its 95% interval."""
    if after.knowledge is None:
        return []
    rows = []
    for name in ("forget", "neighbour", "retain", "control"):
        part, was = after.knowledge.sets.get(name), before.value(f"bank.{name}", "right")
        if part is None:
            continue
        rows.append((f"bank {name}: ranked right", "-" if was is None else f"{was:.3f}", f"{part.right:.3f}"))
        if part.kept is not None and name != "control":
            lo, hi = part.kept_ci
            rows.append(
                (f"bank {name}: kept of {part.base_right}", "", f"{part.kept:.3f} [{lo:.2f}, {hi:.2f}]")
            )
            lo, hi = part.delta_ci
            rows.append((f"bank {name}: Δ gold log-prob", "", f"{part.delta:+.3f} [{lo:+.3f}, {hi:+.3f}]"))
    return rows


def print_before_after(results: dict, console: Console | None = None) -> None:
    table = Table(
        title=f"unlearning {results['concept']!r} ({results['method']}, layers {results['layers']})"
    )
    for col in ("metric", "before", "after"):
        table.add_column(col)
    before, after = (UnlearningMetrics.from_json(results[k]) for k in ("before", "after"))
    for label, path in HEADLINE + KEPT:
        b, a = before.value(*path), after.value(*path)
        table.add_row(label, "-" if b is None else f"{b:.3f}", "-" if a is None else f"{a:.3f}")
    if after.drift:
        table.add_row("KL to base, generic chat (nats/token)", "0", f"{after.drift['kl']:.4f}")
        if after.drift.get("film_kl") is not None:
            table.add_row("KL to base, held-out film chats", "0", f"{after.drift['film_kl']:.4f}")
    if after.behaviour is not None:
        b = after.behaviour
        table.add_row(
            f"replies identical to the base's ({b.n} other-film prompts)", "1", f"{b.identical:.3f}"
        )
        table.add_row("replies stating the base's answer", "1", f"{b.same_answer:.3f}")
        table.add_row("new refusals on other films", "0", str(b.new_refusals))
    for label, before_cell, after_cell in bank_rows(before, after):
        table.add_row(label, before_cell, after_cell)
    p = results["parameters"]
    table.add_row("trainable params", "", f"{p['effective']:,} ({100 * p['fraction']:.3f}%)")
    table.add_row("wall time", "", f"{results['wall_s']} s")
    console = console or Console()
    console.print(table)
    for c in results.get("bars", {}).get("checks", []):
        if not c["ok"]:
            console.print(f"[bold red]BAR MISSED[/]: {check_line(c)}")

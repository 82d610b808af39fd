"""Before/after measurement of an unlearning run on the held-out sets, and its printed table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from orin_unlearn.benchmarks.forgetting import HEADLINE, measure_unlearning, metric
from orin_unlearn.edge.backends.torch_backend import TorchChat
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.data import UnlearnData


def measure(model, tokenizer: ChatTokenizer, data: UnlearnData, cfg: UnlearnConfig) -> dict:
    """Forget / neighbour / retain metrics of `model` on the held-out evaluation sets."""
    chat = TorchChat(model, tokenizer, device=str(next(model.parameters()).device))

    def answer(conversations):
        return chat.answer_batch(conversations, batch_size=cfg.eval_batch_size)

    return measure_unlearning(answer, data.eval_sets, data.concept, data.catalogue, cfg.refusal)


def print_before_after(results: dict, console: Console | None = None) -> None:
    table = Table(
        title=f"unlearning {results['concept']!r} ({results['method']}, layers {results['layers']})"
    )
    for col in ("metric", "before", "after"):
        table.add_column(col)
    for label, path in HEADLINE:
        b, a = metric(results["before"], path), metric(results["after"], path)
        table.add_row(label, "-" if b is None else f"{b:.3f}", "-" if a is None else f"{a:.3f}")
    p = results["parameters"]
    table.add_row("trainable params", "", f"{p['effective']:,} ({100 * p['fraction']:.3f}%)")
    table.add_row("wall time", "", f"{results['wall_s']} s")
    (console or Console()).print(table)

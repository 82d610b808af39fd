"""What the base says and knows, measured once per base, and what the trained model knows.

The base of a run (with its previous adapters merged) answers the held-out prompts, writes the
KL targets (`retain_target: base_reply`) and is scored on the item bank. All three depend only on
its weights and the questions, so they are cached by its sha256 (`edge/cache.py`) and never
recomputed, whatever run, method comparison or stage asks again.

    replies = base_chat(s).answer_batch(conversations)
    base = base_scores(s, items)
    after = model_scores(model, s, items)         # stored with its replies under the adapter once saved
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.progress import Progress

from orin_unlearn.benchmarks import drift
from orin_unlearn.benchmarks.cached_chat import CachedChat, remember_replies
from orin_unlearn.benchmarks.drift import Drift
from orin_unlearn.benchmarks.forgetting import UnlearningMetrics
from orin_unlearn.benchmarks.knowledge import ItemScores, measure_scores, store_scores
from orin_unlearn.benchmarks.option_scoring import TorchSteps, options_scorer
from orin_unlearn.benchmarks.perplexity import Corpus
from orin_unlearn.benchmarks.world.items import Item
from orin_unlearn.edge.answers import BackendChat
from orin_unlearn.edge.backends.torch_backend import TorchBackend
from orin_unlearn.train import models
from orin_unlearn.train.unlearn.evaluate import measure
from orin_unlearn.train.unlearn.session import Session


def base_identity(s: Session) -> dict:
    """What the base's replies and scores depend on: its weights and tokenizer, the adapters
    merged into it, the dtype it runs in (`models.identity`)."""
    return models.identity(s.base_dir, s.cfg.previous_adapters, s.cfg.dtype)


def base_chat(s: Session) -> CachedChat:
    """The base's greedy replies, cached by `base_identity`."""
    return CachedChat(BackendChat(TorchBackend(s.model), s.tokenizer), base_identity(s))


def stage_retain_targets(s: Session, progress: Progress) -> None:
    """With `retain_target: base_reply`, the neighbour / retain training answers become the base's
    own greedy replies (cached): the KL term then holds the model to what it says itself, not to
    the world's templated sentences."""
    cfg = s.cfg
    if cfg.retain_target != "base_reply":
        return
    conversations = [list(m) for m, _ in s.data.neighbour + s.data.retain]
    task = progress.add_task("base replies", total=len(conversations))
    replies = base_chat(s).answer_batch(
        conversations,
        batch_size=cfg.eval_batch_size,
        max_new_tokens=cfg.eval_max_new_tokens,
        on_batch=lambda n: progress.advance(task, n),
    )
    n = len(s.data.neighbour)
    s.data.neighbour = [(m, r) for (m, _), r in zip(s.data.neighbour, replies[:n], strict=True)]
    s.data.retain = [(m, r) for (m, _), r in zip(s.data.retain, replies[n:], strict=True)]


def measure_base(s: Session, progress: Progress | None = None) -> tuple[UnlearningMetrics, dict]:
    """The base's held-out measurement and replies (cached by `base_identity`)."""
    return measure(base_chat(s), s.data, s.cfg, progress, "evaluate base")


def base_scores(s: Session, items: list[Item]) -> ItemScores:
    """The base's scores on the item bank, cached by `base_identity`."""
    return measure_scores(
        options_scorer(TorchSteps(s.model)), s.tokenizer, items, base_identity(s), "base bank"
    )


def model_scores(model, s: Session, items: list[Item]) -> ItemScores:
    """The trained model's scores on the bank (not cached: it has no identity until it is saved;
    `remember` stores them under the saved adapter's)."""
    return measure_scores(options_scorer(TorchSteps(model)), s.tokenizer, items, None, "bank")


def remember(
    s: Session,
    adapter,
    items: list[Item],
    scores: ItemScores,
    replies: dict[str, list[str]],
    drifts: Sequence[tuple[Corpus, Drift]] = (),
) -> None:
    """Cache the saved adapter's bank scores, held-out replies and drift from the base under its
    identity: the export gate, the quality table and the relearning protocol read them back."""
    identity = models.identity(s.base_dir, [*s.cfg.previous_adapters, adapter], s.cfg.dtype)
    store_scores(identity, items, scores)
    for corpus, got in drifts:
        drift.remember(identity, base_identity(s), corpus, got)
    conversations = [list(p.messages) for name in replies for p in s.data.eval_sets[name]]
    flat = [r for name in replies for r in replies[name]]
    remember_replies(identity, conversations, flat, s.cfg.eval_max_new_tokens)

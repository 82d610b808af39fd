"""What every exported artifact is measured on, and the adapter model's own measurement on it.

An artifact answers the adapter's held-out prompts greedily (the forget leak is about behaviour:
what a kiosk visitor sees) and is scored on the run's item bank (what it knows), against the base
and the adapter. Replies and scores are cached by the weights they come from (`edge/cache.py`),
so `bench quality` and `bench knowledge` read what the export already measured.

    evaluation = reference_evaluation(stacked, base_dir, adapter_dirs, max_prompts=48)
    metrics, replies = evaluation.measure(chat, scorer, tokenizer, identity, "onnx-int8")
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orin_unlearn.benchmarks.cached_chat import CachedChat
from orin_unlearn.benchmarks.forgetting import UnlearningMetrics, measure_unlearning
from orin_unlearn.benchmarks.knowledge import ItemScores, knowledge, measure_scores
from orin_unlearn.benchmarks.option_scoring import OptionScorer, TorchSteps, options_scorer
from orin_unlearn.benchmarks.world import heldout_sets, load_world
from orin_unlearn.benchmarks.world.items import Item
from orin_unlearn.benchmarks.world.stage import load_items
from orin_unlearn.edge.answers import BackendChat, Chat
from orin_unlearn.edge.backends.torch_backend import TorchBackend
from orin_unlearn.edge.formats import read_manifest
from orin_unlearn.edge.progress import progress_bar
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train import models


@dataclass
class Evaluation:
    """The adapter's held-out prompts and item bank, the base's scores on the bank, and the
    adapter model's replies, scores and metrics."""

    sets: dict[str, list]
    concept: Any
    catalogue: Any
    refusal: str
    replies: list[str] = field(default_factory=list)
    metrics: UnlearningMetrics = field(default_factory=UnlearningMetrics)
    items: list[Item] = field(default_factory=list)
    items_sha256: str = ""
    base_bank: ItemScores | None = None
    bank: ItemScores | None = None

    @property
    def prompts(self) -> list:
        return [p for name in self.sets for p in self.sets[name]]

    def measure(
        self,
        chat: Chat,
        label: str,
        scorer: OptionScorer | None = None,
        tokenizer: ChatTokenizer | None = None,
        identity: dict | None = None,
    ) -> tuple[UnlearningMetrics, list[str]]:
        """(metrics, replies) of a model on the same prompts and, given its option `scorer`, the
        same bank (knowledge against the base); with `identity` its replies and scores are
        cached under it. Progress lines name `label`."""
        replies: list[str] = []
        chat = CachedChat(chat, identity) if identity is not None else chat

        def answer(conversations: list[list[dict]]) -> list[str]:
            with progress_bar() as progress:
                task = progress.add_task(f"evaluate {label}", total=len(conversations))
                got = chat.answer_batch(conversations, on_batch=lambda n: progress.advance(task, n))
            replies.extend(got)
            return got

        metrics = measure_unlearning(answer, self.sets, self.concept, self.catalogue, self.refusal)
        if scorer is None or not self.items:
            return metrics, replies
        scores = measure_scores(scorer, tokenizer, self.items, identity, f"bank {label}")
        if self.bank is None:
            self.bank = scores
        bank = knowledge(self.items, scores, self.base_bank, items_sha256=self.items_sha256)
        return replace(metrics, knowledge=bank), replies

    def scores(self, scorer: OptionScorer, tokenizer: ChatTokenizer, identity: dict | None) -> ItemScores:
        return measure_scores(scorer, tokenizer, self.items, identity, "bank")


def reference_evaluation(
    model: Any, base_dir: Path, adapter_dirs: list[Path], max_prompts: int | None
) -> Evaluation:
    """Measure the adapter model itself (`model`: PEFT adapters active, fp32) on its held-out
    prompts and item bank, read from the world stage of its run (the folder holding the last
    adapter); the base (the same model with its adapters off) is scored on the bank too. Both
    are cached by `models.identity`, so what training measured is read back, not recomputed."""
    run = Path(adapter_dirs[-1]).parent
    config = read_manifest(adapter_dirs[-1])["config"]
    splits = load_world(run, config["concept"])
    sets = heldout_sets(splits, config["seed"], max_prompts or config["eval_max_prompts"])
    evaluation = Evaluation(sets, splits.concept, splits.catalogue, config["refusal"])
    tokenizer = ChatTokenizer(base_dir)
    scorer = options_scorer(TorchSteps(model)) if model is not None else None
    if scorer is not None:
        evaluation.items, evaluation.items_sha256 = load_items(run)
    if scorer is not None and hasattr(model, "disable_adapter"):  # a PEFT model: its base is inside
        with model.disable_adapter():
            evaluation.base_bank = evaluation.scores(scorer, tokenizer, models.identity(base_dir))
    evaluation.metrics, evaluation.replies = evaluation.measure(
        BackendChat(TorchBackend(model), tokenizer),
        "adapter",
        scorer,
        tokenizer,
        models.identity(base_dir, adapter_dirs),
    )
    return evaluation

"""Analyses of an unlearning run: where the concept lives and whether it moved.

- stability: do paraphrases of one question get the same answer, before and after unlearning?
- similarity: does pairwise semantic similarity of prompts match that of their activations?
- sensitivity: per-layer gradient norm, saliency and Fisher mass from the run's neuron scores;
- shift: how far forget / neighbour / retain activations moved at the adapter's layers.

Each writes JSON + PNG into RUN_DIR/analysis/ and returns a Markdown section for report.md.
Importing this package registers them and needs neither torch nor matplotlib.

    orin-unlearn analyze runs/demo
"""

from __future__ import annotations

from orin_unlearn.benchmarks.analysis import sensitivity, shift, similarity, stability  # noqa: F401
from orin_unlearn.benchmarks.analysis.context import RunContext
from orin_unlearn.benchmarks.analysis.registry import ANALYSES, Outcome, analysis

ORDER = ("stability", "similarity", "sensitivity", "shift")  # the default run order

__all__ = ["ANALYSES", "ORDER", "Outcome", "RunContext", "analysis"]

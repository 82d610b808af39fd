"""Batching shared by every backend and scorer: left-padded token batches (each row's next token in
the last column, so one decode step serves the whole batch) and runs over length-sorted batches
that hand results back in the caller's order. numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

R = TypeVar("R")


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64 arrays with every row right-aligned."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    return ids, mask


def positions_of(mask: np.ndarray) -> np.ndarray:
    """Position ids of a left-padded mask: 0 at each row's first real token (pads get 0)."""
    return np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)


def by_length(lengths: Sequence[int], batch_size: int, run: Callable[[list[int]], list[R]]) -> list[R]:
    """`run(indices)` on batches of indices of similar length (little padding); the results, one
    per index, come back in index order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list = [None] * len(lengths)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        for i, result in zip(idx, run(idx), strict=True):
            out[i] = result
    return out

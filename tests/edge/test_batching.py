"""Length-sorted batching hands results back in the caller's order."""

from __future__ import annotations

import numpy as np

from orin_unlearn.edge.batching import by_length, left_pad, positions_of


def test_by_length_batches_similar_lengths_and_keeps_order():
    lengths = [5, 1, 4, 2, 3]
    seen: list[list[int]] = []

    def run(idx):
        seen.append([lengths[i] for i in idx])
        return [f"item{i}" for i in idx]

    assert by_length(lengths, 2, run) == [f"item{i}" for i in range(5)]
    assert seen == [[1, 2], [3, 4], [5]]


def test_left_pad_right_aligns_and_positions_start_at_each_row():
    ids, mask = left_pad([[7, 8, 9], [5]], pad_id=0)
    assert ids.tolist() == [[7, 8, 9], [0, 0, 5]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert np.array_equal(positions_of(mask), [[0, 1, 2], [0, 0, 0]])

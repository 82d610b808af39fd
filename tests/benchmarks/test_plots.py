"""Which layers a per-layer plot labels when a real model has 30 of them."""

import pytest

from orin_unlearn.benchmarks.plots import spread


def test_few_indices_are_all_kept():
    assert spread(4, 16) == [0, 1, 2, 3]


def test_many_indices_are_thinned_evenly_with_both_ends():
    picked = spread(31, 16)
    assert picked[0] == 0 and picked[-1] == 30
    assert len(picked) == 16 and picked == sorted(set(picked))
    gaps = {b - a for a, b in zip(picked, picked[1:], strict=False)}
    assert gaps == {2}


def test_no_room_for_both_ends_is_an_error():
    with pytest.raises(ValueError, match="at least 2"):
        spread(10, 1)

"""Weight-only int8/int4: onnxruntime's block quantiser, dequantised here, and update survival."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orin_unlearn.export.quantize import roundtrip, survival


@pytest.mark.parametrize("bits", [4, 8])
def test_roundtrip_error_is_within_half_a_step(bits):
    w = np.random.default_rng(0).normal(0, 0.05, (128, 24)).astype(np.float32)
    got = roundtrip(w, bits, block_size=32)
    blocks = w.reshape(4, 32, 24)
    lo, hi = np.minimum(blocks.min(1), 0), np.maximum(blocks.max(1), 0)
    step = np.repeat((hi - lo) / (2**bits - 1), 32, axis=0).reshape(w.shape)
    assert np.all(np.abs(got - w) <= 0.5 * step + 1e-7)
    assert len(np.unique(got[:32, 0])) <= 2**bits  # one block of one column: at most 2^bits levels


def test_survival_counts_only_changed_entries_and_sees_small_updates_vanish():
    torch.manual_seed(0)
    base = {"w": torch.randn(24, 64) * 0.05, "norm": torch.ones(64)}
    merged = {k: v.clone() for k, v in base.items()}
    merged["w"][0, :32] += 0.2  # large: visible in int4 and int8
    merged["w"][1, 32:] += 1e-6  # far below a step: lost in both
    for bits in (4, 8):
        result = survival(base, merged, bits, block_size=32)
        assert list(result["tensors"]) == ["w"]
        assert result["delta_entries"] == 64
        assert result["surviving"] == 32
        assert result["fraction"] == 0.5


def test_survival_rejects_rows_that_do_not_fill_blocks():
    base = {"w": torch.zeros(4, 40)}
    with pytest.raises(ValueError, match="multiple of block"):
        survival(base, {"w": torch.ones(4, 40)}, 4, block_size=32)


def test_bad_bits_and_block_are_refused():
    w = np.zeros((32, 2), np.float32)
    with pytest.raises(ValueError, match="bits"):
        roundtrip(w, 3)
    with pytest.raises(ValueError, match="block_size"):
        roundtrip(w, 4, block_size=24)

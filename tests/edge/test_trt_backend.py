"""The TensorRT backend's pure logic: KV buffer sizes, ping-pong schedule, profile choice."""

from __future__ import annotations

import pytest

from orin_unlearn.edge.backends.trt_backend import DECODE, PREFILL, KvPlan, ping_pong, profile_for
from orin_unlearn.edge.trt_engine import TensorRTUnavailableError, tensorrt_available

# Qwen2.5-3B: 36 layers, 2 KV heads of 128, fp16 cache, 4k context.
QWEN3B = KvPlan(layers=36, kv_heads=2, head_dim=128, max_context=4096, itemsize=2)


def test_buffer_sizes_for_qwen3b():
    assert QWEN3B.buffer_bytes() == 2 * 4096 * 128 * 2 == 2 * 1024 * 1024
    assert QWEN3B.total_bytes() == 4 * 36 * 2 * 1024 * 1024  # 288 MiB: key+value, two of each, 36 layers
    assert QWEN3B.shape(17) == (1, 2, 17, 128)
    with pytest.raises(ValueError, match="4097"):
        QWEN3B.shape(4097)


def test_ping_pong_never_reads_and_writes_the_same_buffer():
    schedule = [ping_pong(step) for step in range(6)]
    assert schedule[:3] == [(0, 1), (1, 0), (0, 1)]
    assert all(read != write for read, write in schedule)
    # what step n writes is what step n + 1 reads
    assert all(schedule[n][1] == schedule[n + 1][0] for n in range(5))


def test_profile_choice():
    assert profile_for(past=0, new_tokens=37, max_prompt=512) == PREFILL
    assert profile_for(past=37, new_tokens=1, max_prompt=512) == DECODE
    with pytest.raises(ValueError, match="prefill profile"):
        profile_for(past=0, new_tokens=600, max_prompt=512)
    with pytest.raises(ValueError, match="one token at a time"):
        profile_for(past=5, new_tokens=2, max_prompt=512)


def test_opening_an_engine_without_tensorrt_says_so(tmp_path):
    if tensorrt_available(runtime_only=True)[0]:
        pytest.skip("TensorRT is available here; this test covers its absence")
    from orin_unlearn.edge.backends import open_backend

    (tmp_path / "model.plan").write_bytes(b"not a plan")
    with pytest.raises((TensorRTUnavailableError, ValueError)):
        open_backend(tmp_path)

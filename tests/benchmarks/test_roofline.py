"""The bandwidth probe: a decode that beats the measured limit raises it (fraction never above 1),
the probe's methods and record on a small buffer, the onnxruntime matrix-vector graph, and the
cache size read from /sys."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from orin_unlearn.benchmarks import roofline


def _measured(gb_s: float) -> roofline.Bandwidth:
    methods = {"numpy-sum-fp32": gb_s * 0.5e9, roofline.ORT_MATVEC: gb_s * 1e9}
    return roofline.Bandwidth(gb_s * 1e9, roofline.ORT_MATVEC, methods, 1024, 512, 2, 5, 300.0)


def test_a_decode_faster_than_the_limit_raises_it(caplog):
    # the numbers: 27.3 tok/s reading 1.98 GB per token against a 'measured' 36.2 GB/s
    probe = _measured(36.2)
    assert 27.3 * 1.98e9 / probe.bytes_per_s == pytest.approx(1.493, abs=1e-3)
    with caplog.at_level(logging.WARNING, logger=roofline.__name__):
        capped = roofline.cap_to_decode(probe, tokens_per_s=27.3, bytes_per_token=1_980_000_000)
    assert capped.bytes_per_s == pytest.approx(54.054e9)
    assert capped.method == roofline.DECODE_IMPLIED and capped.raised_by_decode
    assert capped.probe_bytes_per_s == pytest.approx(36.2e9)  # what the probe said is kept
    assert capped.probe_method == roofline.ORT_MATVEC
    assert len(capped.warnings) == 1 and "under-measured" in capped.warnings[0]
    assert "54.05 GB/s" in caplog.text and "36.20 GB/s" in caplog.text
    assert roofline.roofline_fraction(27.3, 1_980_000_000, capped.bytes_per_s) == 1.0
    assert roofline.limits(1_980_000_000, capped.bytes_per_s)["here"] == pytest.approx(27.3)
    record = capped.to_json()
    assert record["gb_s"] == pytest.approx(54.054, abs=1e-3) and record["probe_gb_s"] == 36.2
    assert record["raised_by_decode"] is True and record["warnings"] == list(capped.warnings)
    assert roofline.Bandwidth.from_json(record).to_json() == record


def test_a_decode_within_the_limit_leaves_it(caplog):
    probe = _measured(60.0)
    with caplog.at_level(logging.WARNING, logger=roofline.__name__):
        same = roofline.cap_to_decode(probe, tokens_per_s=15.0, bytes_per_token=2_000_000_000)
    assert same == probe and not same.raised_by_decode and not caplog.records
    assert roofline.roofline_fraction(15.0, 2_000_000_000, same.bytes_per_s) == pytest.approx(0.5)
    assert same.to_json()["method"] == roofline.ORT_MATVEC


@pytest.mark.parametrize("rate", [0.1, 10.0, 27.3, 1e4])
def test_the_fraction_never_exceeds_one(rate):
    capped = roofline.cap_to_decode(_measured(36.2), rate, 1_980_000_000)
    fraction = roofline.roofline_fraction(rate, 1_980_000_000, capped.bytes_per_s)
    assert 0 < fraction <= 1.0
    assert capped.raised_by_decode == (rate * 1.98e9 > 36.2e9)


def test_the_probe_records_every_method_on_a_small_buffer():
    found = roofline.measure_bandwidth(threads=2, mib=16, runs=2)
    assert set(found.methods) == {*roofline.PROBES, roofline.ORT_MATVEC}
    assert all(1e8 < v < 1e13 for v in found.methods.values())  # 0.1 GB/s .. 10 TB/s
    assert found.bytes_per_s == max(found.methods.values()) and found.method == found.probe_method
    assert (found.buffer_mib, found.matvec_mib, found.threads, found.runs) == (16, 8, 2, 2)
    assert not found.raised_by_decode
    if found.cache_mib:  # 16 MiB is not far larger than any last-level cache of today
        assert any("last-level cache" in w for w in found.warnings)
    record = found.to_json()
    assert set(record["methods_gb_s"]) == set(found.methods) and record["method"] == found.method
    # measured once per process and arguments
    assert roofline.measure_bandwidth(threads=2, mib=16, runs=2) is found
    assert roofline.read_bandwidth(threads=2, mib=16, repeats=2) == found.bytes_per_s
    with pytest.raises(ValueError, match="threads 0"):
        roofline.measure_bandwidth(threads=0, mib=16)


def test_the_onnxruntime_matvec_multiplies_and_is_timed():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((roofline.MATVEC_COLUMNS, 64)).astype(np.float32)
    x = rng.standard_normal((1, roofline.MATVEC_COLUMNS)).astype(np.float32)
    (y,) = roofline.matvec_session(weight, threads=1).run(None, {"x": x})
    np.testing.assert_allclose(y, x @ weight, rtol=1e-4, atol=1e-3)
    assert roofline.ort_matvec(weight, threads=1, runs=2) > 1e8


def test_last_level_cache_is_read_from_sys(tmp_path):
    for index, level, size in (("index0", 1, "48K"), ("index2", 2, "2048K"), ("index3", 3, "307200K")):
        (tmp_path / index).mkdir()
        (tmp_path / index / "level").write_text(f"{level}\n")
        (tmp_path / index / "size").write_text(f"{size}\n")
    assert roofline.last_level_cache_mib(tmp_path) == 300.0
    assert roofline.default_buffer_mib(300.0) == 1200  # 4x the cache, more than 1 GiB
    assert roofline.default_buffer_mib(4.0) == roofline.default_buffer_mib(None) == 1024
    assert roofline.last_level_cache_mib(tmp_path / "absent") is None

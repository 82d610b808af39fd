"""The latency suite: percentiles and prompt lengths on hand-made cases, roofline arithmetic,
and its files and JSON contract on the tiny model."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.benchmarks import latency, roofline
from orin_unlearn.edge import cli
from orin_unlearn.edge.generator import Generator


def test_percentiles_of_known_values():
    got = latency.percentiles([float(v) for v in range(1, 101)])
    assert got == pytest.approx({"p50": 50.5, "p95": 95.05, "p99": 99.01})
    assert latency.percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0}
    with pytest.raises(ValueError):
        latency.percentiles([])


def test_roofline_limits():
    got = roofline.limits(bytes_per_token=2_000_000_000, bandwidth=40e9)
    assert got["here"] == pytest.approx(20.0)
    assert got["AGX Orin"] == pytest.approx(102.4)  # 204.8 GB/s over 2 GB per token
    assert got["Orin Nano"] == pytest.approx(34.0)


def test_a_cell_faster_than_the_probe_raises_the_limit(onnx_dir, monkeypatch):
    slow = roofline.Bandwidth(1e6, "numpy-sum-fp32", {"numpy-sum-fp32": 1e6}, 16, 8, 2, 1)
    monkeypatch.setattr(roofline, "measure_bandwidth", lambda threads, mib: slow)
    result = latency.run(onnx_dir, "auto", [40], [8, 16], 2, 0, power="off")
    roof, best = result["roofline"], max(c["decode_tokens_per_s"] for c in result["cells"])
    assert roof["fraction_here"] == 1.0 and roof["bandwidth"]["raised_by_decode"]
    assert roof["limit_tokens_per_s"]["here"] == pytest.approx(best)
    assert "implied by that cell" in latency.markdown(result)
    # a file written before the cap: the fraction shown is still at most 1
    old = {"fraction_here": 1.486, "read_bandwidth_gb_s": 36.2}
    assert latency.fraction_here(old) == 1.0 and latency.bandwidth_note(old) == "36.2 GB/s measured"


def test_prompt_of_hits_the_exact_length(onnx_dir):
    generator = Generator.from_dir(onnx_dir)
    for tokens in (40, 97, 300):
        assert len(generator.prompt_ids(latency.prompt_of(generator, tokens))) == tokens
    with pytest.raises(ValueError, match="shorter than the chat template"):
        latency.prompt_of(generator, 3)


def test_main_writes_json_plot_and_last_line(onnx_dir, tmp_path, capsys):
    argv = [
        "--model",
        str(onnx_dir),
        "--prompts",
        "40",
        "--outputs",
        "8,16",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--probe-mib",
        "16",
    ]
    assert cli.main(["bench", "latency", *argv, "--out", str(tmp_path)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "latency.json").read_text())
    assert [(c["prompt_tokens"], c["output_tokens"]) for c in last["cells"]] == [(40, 8), (40, 16)]
    assert len(saved["cells"][1]["token_ms_all"]) == 2 * 15  # two requests, 15 gaps between 16 tokens
    assert all(
        c["ttft_ms"]["p50"] > 0 and c["token_ms"]["p99"] >= c["token_ms"]["p50"] for c in last["cells"]
    )
    assert 0 < last["roofline"]["fraction_here"] <= 1
    assert last["roofline"]["bandwidth"]["buffer_mib"] == 16
    assert (tmp_path / "latency.png").stat().st_size > 10_000
    assert cli.main(["bench", "latency", "--model", str(onnx_dir), "--prompts", "0"]) == 2


def _fake_tegrastats(folder):
    import stat as stat_mod

    line = (
        "11-22-2026 10:00:00 RAM 3000/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [5%@1728,off,off,off,"
        "off,off] EMC_FREQ 10%@2133 GR3D_FREQ 50%@[1020] cpu@45C soc2@44C VDD_IN 7000mW/7000mW "
        "VDD_CPU_GPU_CV 2000mW/2000mW VDD_SOC 1500mW/1500mW"
    )
    script = folder / "tegrastats"
    script.write_text(f"#!/bin/sh\nwhile true; do echo '{line}'; sleep 0.02; done\n")
    script.chmod(script.stat().st_mode | stat_mod.S_IEXEC)


def test_power_is_measured_with_tegrastats_and_explained_without(onnx_dir, tmp_path, monkeypatch):
    from orin_unlearn.edge.device import telemetry

    args = (onnx_dir, "auto", [40], [16], 3, 0)
    off = latency.run(*args, power="off", probe_mib=16)
    assert off["power"] == {"unavailable": "not measured (--power off)"}
    if telemetry.run_command(["tegrastats", "--help"]) is None:  # not a Jetson
        assert "not a Jetson" in latency.run(*args, probe_mib=16)["power"]["unavailable"]
        with pytest.raises(ValueError, match="--power on"):
            latency.run(*args, power="on")
    _fake_tegrastats(tmp_path)
    monkeypatch.setattr(telemetry, "TOOL_PATH", f"{tmp_path}:/usr/bin:/bin")
    measured = latency.run(onnx_dir, "auto", [40], [16, 16], 25, 0, power="on", probe_mib=16)["power"]
    assert measured["rail"] == "VDD_IN" and measured["avg_w"] == pytest.approx(7.0)
    assert measured["tokens"] == 2 * 25 * 16
    assert measured["tokens_per_joule"] == pytest.approx(measured["tokens"] / (7.0 * measured["duration_s"]))
    assert "nvpmodel" in json.dumps(measured["state"])

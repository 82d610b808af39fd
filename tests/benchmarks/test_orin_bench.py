"""benchmarks/orin_bench.sh, the on-device script, run here end to end on a real run (this machine
is not a Jetson: it must say so and go on with onnxruntime)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "orin_bench.sh"


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def test_dry_run_lists_the_steps_in_order(tmp_path):
    stage = tmp_path / "export" / "onnx-fp16"
    stage.mkdir(parents=True)
    (stage / "model.onnx").write_bytes(b"x")
    out = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path), "--dry-run"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout
    steps = [line.split()[2:4] for line in out.splitlines() if line.startswith("+ orin-unlearn")]
    assert steps == [
        ["jetson", "preflight"],
        ["export", "engine"],
        ["bench", "quality"],
        ["bench", "latency"],
        ["report", str(tmp_path)],
    ]


def test_missing_graph_is_a_usage_error(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, env=_env())
    assert done.returncode == 2 and "model.onnx" in done.stderr


@pytest.mark.slow
def test_quick_run_on_a_real_run_off_a_jetson(exported_run, tmp_path):
    run, _ = exported_run
    copy = tmp_path / "run"
    shutil.copytree(run / "adapter", copy / "adapter")
    shutil.copytree(run / "world", copy / "world")
    shutil.copytree(run / "export" / "onnx-fp16", copy / "export" / "onnx-fp16")
    done = subprocess.run(
        ["bash", str(SCRIPT), str(copy), "--quick"], capture_output=True, text=True, env=_env(), timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not a Jetson" in done.stdout
    quality = json.loads((copy / "bench" / "quality.json").read_text())
    rows = {r["stage"]: r for r in quality["stages"]}
    assert rows["onnx-fp16"]["metrics"]["forget leak (held-out)"] <= 0.05
    assert rows["engine (TensorRT fp16)"]["status"] == "skipped"
    latency = json.loads((copy / "bench" / "latency.json").read_text())
    assert "not a Jetson" in latency["power"]["unavailable"]
    report = (copy / "report.md").read_text()
    assert report.index("## Quality of every stage") < report.index("## Latency")
    assert (copy / "bench" / "quality.png").is_file() and (copy / "bench" / "latency.png").is_file()

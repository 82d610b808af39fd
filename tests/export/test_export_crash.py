"""A re-export killed with SIGKILL leaves either the old complete set of stages or the new one,
never a mix, and the next run removes what the killed one left behind."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orin_unlearn.edge.formats import verify_stage

pytestmark = pytest.mark.slow


def _export(adapter: Path, out: Path, variants: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "orin_unlearn.edge.cli",
        "export",
        "--base",
        "tiny",
        "--adapter",
        str(adapter),
        "--out",
        str(out),
        "--variants",
        variants,
        "--eval-max-prompts",
        "8",
    ]


def _complete(out: Path) -> dict:
    """export.json, after checking it describes exactly the stages on disk and each verifies."""
    summary = json.loads((out / "export.json").read_text())
    stages = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert stages == sorted(["merged", *(f"onnx-{v}" for v in summary["variants"])])
    for name in stages:
        verify_stage(out / name, allow_failed=True)
    return summary


def test_sigkill_mid_export_leaves_one_complete_set_and_the_next_run_cleans_up(exported_run, tmp_path):
    run, _ = exported_run
    adapter, out = tmp_path / "adapter", tmp_path / "export"
    shutil.copytree(run / "adapter", adapter)
    shutil.copytree(run / "world", tmp_path / "world")  # the adapter's held-out prompts
    shutil.copytree(run / "export", out)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sorted(_complete(out)["variants"]) == ["fp16", "fp32", "int8"]

    process = subprocess.Popen(_export(adapter, out, "fp32,fp16"), stderr=subprocess.DEVNULL)
    staging = tmp_path / f".export.orin-tmp-{process.pid}"
    deadline = time.monotonic() + 600
    while not (staging / "onnx-fp32" / "manifest.json").is_file():  # one new stage is complete
        assert process.poll() is None, "the export ended before it could be killed"
        assert time.monotonic() < deadline, "no new stage after 10 minutes"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()

    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the old set, byte for byte: nothing new beside old stages
    assert staging.is_dir()  # the litter a kill leaves

    assert subprocess.run(_export(adapter, out, "fp32,fp16"), stderr=subprocess.DEVNULL).returncode == 0
    assert sorted(_complete(out)["variants"]) == ["fp16", "fp32"]  # the new set, and only it
    assert not list(tmp_path.glob(".export.orin-*"))

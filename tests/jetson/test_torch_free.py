"""The Jetson-side modules import without torch, transformers, tensorrt or pycuda (JetPack's system
Python has none of the first two, and preflight must run where TensorRT is broken)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "orin_unlearn.edge.preflight",
    "orin_unlearn.edge.telemetry",
    "orin_unlearn.edge.memory_budget",
    "orin_unlearn.export.trt_build",
]


@pytest.mark.parametrize("module", MODULES)
def test_imports_without_heavy_libraries(module):
    heavy = ("torch", "transformers", "peft", "tensorrt", "pycuda")
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr

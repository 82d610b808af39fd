"""The runtime and benchmark packages, and the on-device engine build, import without torch,
transformers, peft, tensorrt or pycuda (a Jetson may have none of the first three, and preflight
must run where TensorRT is broken)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "orin_unlearn.edge",
    "orin_unlearn.edge.cli",
    "orin_unlearn.edge.demo",
    "orin_unlearn.edge.demo_stages",
    "orin_unlearn.edge.tokenizer",
    "orin_unlearn.edge.formats",
    "orin_unlearn.edge.config",
    "orin_unlearn.edge.backends.torch_backend",
    "orin_unlearn.benchmarks",
    "orin_unlearn.benchmarks.world",
    "orin_unlearn.benchmarks.quality",
    "orin_unlearn.benchmarks.report",
    "orin_unlearn.benchmarks.base_quality",
    "orin_unlearn.benchmarks.world_cli",
    "orin_unlearn.benchmarks.base_quality_cli",
    "orin_unlearn.benchmarks.forgetting",
    "orin_unlearn.edge.adapters",
    "orin_unlearn.edge.sampling",
    "orin_unlearn.edge.generator",
    "orin_unlearn.edge.latency",
    "orin_unlearn.edge.api",
    "orin_unlearn.edge.server",
    "orin_unlearn.edge.server_limits",
    "orin_unlearn.edge.engine_manifest",
    "orin_unlearn.edge.trt_engine",
    "orin_unlearn.edge.backends",
    "orin_unlearn.edge.backends.ort_backend",
    "orin_unlearn.edge.backends.trt_backend",
    "orin_unlearn.edge.bundle",
    "orin_unlearn.edge.bundle_index",
    "orin_unlearn.edge.unpack",
    "orin_unlearn.edge.keys",
    "orin_unlearn.benchmarks.latency",
    "orin_unlearn.benchmarks.robustness",
    "orin_unlearn.benchmarks.decode_bench",
    "orin_unlearn.benchmarks.roofline",
    "orin_unlearn.benchmarks.perplexity",
    "orin_unlearn.benchmarks.stages",
    "orin_unlearn.benchmarks.quality_bench",
    "orin_unlearn.benchmarks.weight_attacks",
    "orin_unlearn.benchmarks.knowledge_probe",
    "orin_unlearn.benchmarks.plots",
    "orin_unlearn.edge.preflight",
    "orin_unlearn.edge.telemetry",
    "orin_unlearn.edge.memory_budget",
    "orin_unlearn.edge.batching",
    "orin_unlearn.export.trt_build",  # the engine build runs on a Jetson, where torch is not
]


@pytest.mark.parametrize("module", MODULES)
def test_imports_without_torch(module):
    heavy = ("torch", "transformers", "peft", "tensorrt", "pycuda")
    code = f"import sys, {module}; bad = [m for m in {heavy!r} if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

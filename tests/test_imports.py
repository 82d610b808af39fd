"""The runtime and benchmark packages, and the on-device engine build, import without torch,
transformers, peft, tensorrt or pycuda (a Jetson may have none of the first three, and preflight
must run where TensorRT is broken)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest


def discover(*packages: str) -> list[str]:
    """Every module of `packages`, found on disk (a new module is tested without being listed)."""
    names = []
    for package in packages:
        names.append(package)
        path = importlib.import_module(package).__path__
        names += [m.name for m in pkgutil.walk_packages(path, f"{package}.")]
    return sorted(names)


# edge and benchmarks whole; of export, the engine build (it runs on a Jetson, where torch is not)
MODULES = [*discover("orin_unlearn.edge", "orin_unlearn.benchmarks"), "orin_unlearn.export.trt_build"]


def test_discovery_finds_the_modules_a_list_once_missed():
    assert {"orin_unlearn.edge.chat", "orin_unlearn.benchmarks.analysis.similarity"} <= set(MODULES)
    assert len(MODULES) > 60


@pytest.mark.parametrize("module", MODULES)
def test_imports_without_torch(module):
    heavy = ("torch", "transformers", "peft", "tensorrt", "pycuda")
    code = f"import sys, {module}; bad = [m for m in {heavy!r} if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

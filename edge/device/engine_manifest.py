"""The engine stage's manifest: which device a TensorRT plan was built for, and the refusal to run it elsewhere.

A plan only runs on the GPU model and TensorRT version it was built with, and on a Jetson the L4T
release pins the CUDA and driver stack beneath it. `stamp` records those facts next to the plan;
`check_matches` compares them with the device at load time and refuses with every mismatch named,
rather than failing deep inside deserialisation. `stamp` also records the graph the plan was
built from (its absolute path, and the sha256 of the graph and of its external weights), which
ties the engine to the signed bundle that graph came from (edge/device/installed.py). Every
hardware query is a plain function that `device_info` takes as an argument, so tests pass fake
values and need no GPU.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from orin_unlearn.edge.errors import DeviceMismatchError, ManifestError
from orin_unlearn.edge.formats import make_manifest, sha256_file, write_manifest

PLAN = "model.plan"
# What an engine build copies from the graph's folder next to the plan (export/trt_build.py's
# SERVING_FILES): what the runtime reads besides the weights, checked against the signed bundle.
SERVED_COPIES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "kiosk.json",
)
NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
# CUdevice_attribute values from cuda.h.
_CC_MAJOR, _CC_MINOR = 75, 76
_RELEASE = re.compile(r"^#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", re.MULTILINE)


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to. None means "not known here" (for L4T: not a Jetson)."""

    tensorrt_version: str | None
    gpu_name: str | None
    compute_capability: str | None
    l4t_release: str | None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceInfo:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ManifestError(f"engine manifest's device record lacks {missing}")
        return cls(**{n: data[n] for n in names})


def parse_nv_tegra_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, ...' -> '36.4.3'; None when the text is not such a line."""
    match = _RELEASE.search(text)
    if match is None:
        return None
    major, minor, patch = match.group(1), match.group(2), match.group(3) or "0"
    return f"{major}.{minor}.{patch}"


def read_text(path: str) -> str | None:
    """The file's text, or None when it cannot be read (absent off a Jetson)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def tensorrt_version() -> str | None:
    """The installed TensorRT Python package's version, or None."""
    try:
        import tensorrt as trt
    except (ImportError, OSError):
        return None
    return str(trt.__version__)


def cuda_gpu(index: int = 0) -> tuple[str, str] | None:
    """(name, 'major.minor' compute capability) of CUDA device `index` via the driver API, or None."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    calls = (
        lambda: lib.cuInit(0),
        lambda: lib.cuDeviceGet(ctypes.byref(device), index),
        lambda: lib.cuDeviceGetName(name, len(name), device),
        lambda: lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device),
        lambda: lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device),
    )
    if any(call() != 0 for call in calls):
        return None
    return name.value.decode(errors="replace"), f"{major.value}.{minor.value}"


def device_info(
    read: Callable[[str], str | None] = read_text,
    tensorrt: Callable[[], str | None] = tensorrt_version,
    gpu: Callable[[], tuple[str, str] | None] = cuda_gpu,
) -> DeviceInfo:
    """Gather the facts an engine is tied to; each query can be replaced (tests pass fakes).

    Args:
        read: reads a text file, None when absent; used for /etc/nv_tegra_release.
        tensorrt: returns the TensorRT version, None when TensorRT is absent.
        gpu: returns (GPU name, compute capability such as "8.7"), None without a CUDA GPU.
    """
    release_text = read(NV_TEGRA_RELEASE)
    name, capability = gpu() or (None, None)
    return DeviceInfo(
        tensorrt_version=tensorrt(),
        gpu_name=name,
        compute_capability=capability,
        l4t_release=parse_nv_tegra_release(release_text) if release_text else None,
    )


def stamp(
    engine_dir: str | Path, onnx_path: str | Path, device: DeviceInfo, build_settings: Mapping[str, Any]
) -> dict:
    """Write `engine_dir/manifest.json` for the plan built there from `onnx_path` on `device`.

    `build_settings` is recorded as the stage config; its "profiles" entry (a list of
    `ProfileSpec.as_dict()`) is also copied to the top level.
    """
    engine_dir, onnx_path = Path(engine_dir), Path(onnx_path).resolve()
    onnx_sha256 = sha256_file(onnx_path)
    data = external_data(onnx_path)
    plan = engine_dir / PLAN
    results: dict[str, Any] = {}
    if plan.is_file():
        results = {"plan_sha256": sha256_file(plan), "plan_bytes": plan.stat().st_size}
    manifest = make_manifest("engine", {"onnx": onnx_sha256}, dict(build_settings), results, plan.is_file())
    manifest.update(
        device=device.as_dict(),
        onnx=str(onnx_path),
        onnx_sha256=onnx_sha256,
        onnx_data_sha256=sha256_file(data) if data.is_file() else None,
        profiles=list(build_settings.get("profiles", [])),
    )
    return write_manifest(engine_dir, manifest)


def external_data(onnx_path: str | Path) -> Path:
    """Where a graph keeps its external weights: `<name>_data` beside it (model.onnx_data)."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + "_data")


def write_bytes_atomic(path: Path, data: Any) -> None:
    """Write a plan or timing cache to a temp file beside `path`, fsync, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def check_matches(manifest: Mapping[str, Any], device: DeviceInfo) -> None:
    """Raise DeviceMismatchError naming every field where `device` differs from the build device."""
    if "device" not in manifest:
        raise ManifestError("engine manifest has no 'device' record; rebuild the engine")
    built = DeviceInfo.from_dict(manifest["device"])
    mismatches = [
        f"{f.name}: built with {getattr(built, f.name)!r}, this device has {getattr(device, f.name)!r}"
        for f in fields(DeviceInfo)
        if getattr(built, f.name) != getattr(device, f.name)
    ]
    if mismatches:
        raise DeviceMismatchError(
            "the engine was built for another device; rebuild it here. " + "; ".join(mismatches)
        )


def check_onnx(manifest: Mapping[str, Any], onnx_path: str | Path) -> None:
    """Raise ManifestError (a ValueError) when `onnx_path` is not the graph the engine was built from."""
    expected = manifest.get("onnx_sha256")
    if not expected:
        raise ManifestError("engine manifest has no 'onnx_sha256'; rebuild the engine")
    actual = sha256_file(onnx_path)
    if actual != expected:
        raise ManifestError(
            f"{onnx_path} has sha256 {actual}, but the engine was built from sha256 {expected}; "
            "rebuild the engine"
        )


def check_plan(manifest: Mapping[str, Any], plan_path: str | Path) -> None:
    """Raise ManifestError when the plan on disk is not the one the manifest recorded."""
    expected = manifest.get("results", {}).get("plan_sha256")
    if not expected:
        raise ManifestError("engine manifest has no 'plan_sha256'; rebuild the engine")
    actual = sha256_file(plan_path)
    if actual != expected:
        raise ManifestError(f"{plan_path} has sha256 {actual}, but its manifest records {expected}")

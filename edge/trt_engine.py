"""Load a TensorRT engine stage on the device it was built for (TensorRT 10.x, as on JetPack 6.2).

Shared by the runtime (`backends/trt_backend.py`) and the builder (`export/trt_build.py`). tensorrt
is imported only inside functions, so this module imports anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orin_unlearn.edge.device import engine_manifest
from orin_unlearn.edge.device.engine_manifest import PLAN, DeviceInfo
from orin_unlearn.edge.device.installed import verify_served
from orin_unlearn.edge.errors import EngineBuildError, ManifestError, TensorRTUnavailableError
from orin_unlearn.edge.formats import MANIFEST, verify_stage


@dataclass
class LoadedEngine:
    """A deserialised engine; the runtime is kept alive as long as the engine is used."""

    engine: Any
    runtime: Any
    manifest: dict


def tensorrt_available(runtime_only: bool = False) -> tuple[bool, str]:
    """(True, version) when TensorRT imports and can use a CUDA GPU, else (False, why).

    The probe creates a trt.Builder, or with `runtime_only` the lighter trt.Runtime a loader needs.
    """
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        return False, f"the tensorrt Python package cannot be imported ({e})"
    try:
        probe = trt.Runtime if runtime_only else trt.Builder
        if probe(trt.Logger(trt.Logger.ERROR)) is None:  # older bindings returned None
            raise RuntimeError(f"trt.{probe.__name__} returned None")
    except Exception as e:  # the binding raises when CUDA cannot be initialised
        return False, f"TensorRT {trt.__version__} is installed but cannot use a CUDA GPU ({e})"
    return True, f"TensorRT {trt.__version__}"


def require_tensorrt(runtime_only: bool = False) -> Any:
    ok, reason = tensorrt_available(runtime_only)
    if not ok:
        raise TensorRTUnavailableError(f"TensorRT not available here: {reason}")
    import tensorrt as trt

    return trt


def load_engine(engine_dir: str | Path, device: DeviceInfo | None = None) -> LoadedEngine:
    """Deserialise `engine_dir/model.plan` after checking its manifest against `device`.

    `device` defaults to this machine's. Raises DeviceMismatchError naming each differing field,
    ManifestError for an unfinished stage, a plan whose hash differs from its manifest, or a stale
    engine: one not built from the graph, tokenizer and template now in place (the signed
    bundle's, edge/device/installed.py), with the command that rebuilds it.
    """
    engine_dir = Path(engine_dir)
    manifest = verify_stage(engine_dir)  # ok, and every file's sha256 (the plan's included)
    if manifest is None or manifest["stage"] != "engine":
        raise ManifestError(f"{engine_dir} is not a finished engine stage (manifest {MANIFEST})")
    verify_served(engine_dir)  # built from the graph now in place (the signed bundle's): else stale
    if device is None:
        require_tensorrt(runtime_only=True)
        device = engine_manifest.device_info()
    engine_manifest.check_matches(manifest, device)
    plan_path = engine_dir / PLAN
    engine_manifest.check_plan(manifest, plan_path)
    trt = require_tensorrt(runtime_only=True)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        raise EngineBuildError(f"TensorRT could not deserialise {plan_path}; see its errors above")
    return LoadedEngine(engine, runtime, manifest)

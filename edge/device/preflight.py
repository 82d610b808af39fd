"""`orin-unlearn jetson preflight`: is this Jetson ready to build and serve the model? If not, what to fix.

Checks the module (device tree, /etc/nv_tegra_release), the L4T and JetPack release, CUDA,
TensorRT, pycuda, onnxruntime's execution providers, the Python version, MemAvailable (the
number that matters on unified memory, not CUDA's free memory), free disk, the nvpmodel power
mode and the jetson_clocks state. Prints a table with a "how to fix" line for everything missing,
then, as its last stdout line, the whole report as one JSON object.

    orin-unlearn jetson preflight [--json] [--path /opt/orin-unlearn]

Exit status: 0 on a Jetson with nothing missing (warnings allowed), 1 on a Jetson with something
missing, EXIT_NOT_JETSON (5) on any other machine. Every probe reads through a `System` (a root
folder, a command runner, import and disk probes), so tests replay recorded Jetson output.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from orin_unlearn.edge.device import telemetry
from orin_unlearn.edge.device.engine_manifest import parse_nv_tegra_release
from orin_unlearn.edge.device.memory_budget import GIB, gib, parse_meminfo
from orin_unlearn.edge.errors import EXIT_FAILED, EXIT_NOT_JETSON, EXIT_OK

EXIT_PROBLEMS = EXIT_FAILED
OK, MISSING, WARN, SKIP = "ok", "missing", "warn", "skip"

# L4T (Jetson Linux) release -> JetPack. Supported: L4T 36.4.x, i.e. JetPack 6.1, 6.2 and 6.2.1,
# which ship TensorRT 10.3, CUDA 12.6 and Python 3.10 on Ubuntu 22.04. JetPack 6.0 (L4T 36.3) ships
# TensorRT 8.6 and CUDA 12.2, which cannot build this project's strongly typed engines; JetPack 5
# (L4T 35) has Python 3.8. Both are recognised and reported as needing an upgrade.
JETPACK = {"35.4.1": "5.1.2", "35.5.0": "5.1.3", "36.2.0": "6.0 DP", "36.3.0": "6.0"}
JETPACK.update({"36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1"})
SUPPORTED_L4T = ("36", "4")
RECOMMENDED = "JetPack 6.2 (L4T 36.4.3) or later 6.2.x"
# Module part number (device-tree compatible "nvidia,p<carrier>+p<module>") -> name.
MODULES = {
    "p3701-0000": "Jetson AGX Orin (developer kit module)",
    "p3701-0004": "Jetson AGX Orin 32GB",
    "p3701-0005": "Jetson AGX Orin 64GB",
    "p3701-0008": "Jetson AGX Orin Industrial",
    "p3767-0000": "Jetson Orin NX 16GB",
    "p3767-0001": "Jetson Orin NX 8GB",
    "p3767-0003": "Jetson Orin Nano 8GB",
    "p3767-0004": "Jetson Orin Nano 4GB",
    "p3767-0005": "Jetson Orin Nano 8GB (developer kit)",
}
ORIN_SOC = "tegra234"
MIN_FREE_MEMORY, MIN_FREE_DISK = 2 * GIB, 10 * GIB
_PART = re.compile(r"\+(p\d{4}-\d{4})(-super)?")
_NVCC = re.compile(r"release (\d+\.\d+), V([\d.]+)")
FIX_JETPACK = "sudo apt update && sudo apt install nvidia-jetpack"
POWER = ("power mode", "clocks")


def module_version(name: str) -> str | None:
    """The version of an importable module, or None when it does not import."""
    try:
        module = importlib.import_module(name)
    except Exception:  # a broken binding raises anything from OSError to RuntimeError
        return None
    version = getattr(module, "__version__", None) or getattr(module, "VERSION_TEXT", None)
    if version is None:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "unknown version"
    return str(version)


def onnxruntime_providers() -> list[str] | None:
    try:
        import onnxruntime
    except Exception:
        return None
    return list(onnxruntime.get_available_providers())


@dataclass
class System:
    """Where every probe reads from; tests point `root` at recorded files and fake the rest."""

    root: Path = Path("/")
    run: telemetry.Runner = telemetry.run_command
    module_version: Callable[[str], str | None] = module_version
    ort_providers: Callable[[], list[str] | None] = onnxruntime_providers
    python_version: tuple[int, int, int] = tuple(sys.version_info[:3])  # type: ignore[assignment]
    disk_free: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free

    def read(self, path: str) -> str | None:
        try:
            return (self.root / path.lstrip("/")).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


@dataclass(frozen=True)
class Module:
    model: str | None
    compatible: list[str]
    soc: str | None
    part: str | None
    name: str | None
    super_mode: bool
    l4t: str | None

    @property
    def jetson(self) -> bool:
        return self.l4t is not None or self.soc is not None


def detect_module(system: System) -> Module:
    """Read the device tree (model, compatible) and /etc/nv_tegra_release."""
    model = (system.read("/proc/device-tree/model") or "").strip("\x00\n ") or None
    compatible = [c for c in (system.read("/proc/device-tree/compatible") or "").split("\x00") if c.strip()]
    soc = next((c.split(",", 1)[1] for c in compatible if c.startswith("nvidia,tegra")), None)
    part = next((m for c in compatible if (m := _PART.search(c))), None)
    release = system.read("/etc/nv_tegra_release")
    return Module(
        model=model,
        compatible=compatible,
        soc=soc,
        part=part.group(1) if part else None,
        name=MODULES.get(part.group(1)) if part else None,
        super_mode=bool(part and part.group(2)) or "Super" in (model or ""),
        l4t=parse_nv_tegra_release(release) if release else None,
    )


def jetson_memory_available(root: str | Path = "/") -> int | None:
    """MemAvailable in bytes on a Jetson (read under `root`), None on any other machine."""
    system = System(root=Path(root))
    if not detect_module(system).jetson:
        return None
    return parse_meminfo(system.read("/proc/meminfo") or "").get("MemAvailable")


def jetpack_of(l4t: str) -> str:
    """'36.4.3' -> '6.2'; an unlisted 36.4.x patch -> 'L4T 36.4.x (JetPack 6.1-6.2.x)'."""
    if l4t in JETPACK:
        return JETPACK[l4t]
    if tuple(l4t.split(".")[:2]) == SUPPORTED_L4T:
        return "6.1-6.2.x"
    return "unknown"


@dataclass
class Check:
    name: str
    status: str
    value: str
    fix: str = ""


@dataclass
class Report:
    module: Module
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        if not self.module.jetson:
            return EXIT_NOT_JETSON
        return EXIT_PROBLEMS if any(c.status == MISSING for c in self.checks) else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "jetson": self.module.jetson,
            "ok": self.exit_status == EXIT_OK,
            "exit_status": self.exit_status,
            "module": asdict(self.module),
            "jetpack": jetpack_of(self.module.l4t) if self.module.l4t else None,
            "checks": [asdict(c) for c in self.checks],
        }


def _module_check(m: Module) -> Check:
    if not m.jetson:
        why = "no /etc/nv_tegra_release and the device tree names no NVIDIA Tegra SoC"
        return Check("module", SKIP, f"not a Jetson ({why})")
    label = m.name or m.model or "unknown Jetson"
    if m.super_mode:
        label += " (Super)"
    if m.soc is not None and m.soc != ORIN_SOC:
        return Check(
            "module", MISSING, f"{label}, SoC {m.soc}", "this project targets Jetson Orin (tegra234)"
        )
    return Check("module", OK, f"{label}, SoC {m.soc or 'unknown'}")


def _l4t_check(m: Module) -> Check:
    if m.l4t is None:
        return Check("L4T / JetPack", MISSING, "no /etc/nv_tegra_release", f"flash {RECOMMENDED}")
    value = f"L4T {m.l4t} = JetPack {jetpack_of(m.l4t)}"
    if tuple(m.l4t.split(".")[:2]) != SUPPORTED_L4T:
        return Check("L4T / JetPack", MISSING, value, f"TensorRT 10 needs L4T 36.4: flash {RECOMMENDED}")
    return Check("L4T / JetPack", OK, value)


def cuda_version(system: System) -> str | None:
    """CUDA toolkit version from /usr/local/cuda/version.json, else `nvcc --version`."""
    text = system.read("/usr/local/cuda/version.json")
    if text:
        try:
            return str(json.loads(text)["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            pass
    result = system.run(["nvcc", "--version"])
    match = _NVCC.search(result.stdout) if result is not None else None
    return match.group(2) if match else None


def _software_checks(system: System, jetson: bool) -> list[Check]:
    """CUDA, TensorRT, pycuda, onnxruntime, Python. Off a Jetson only onnxruntime and Python are
    required (the TensorRT path is for the device), so the others are reported as warnings."""
    venv = "create the venv with --system-site-packages (jetson/install.sh)"
    only_trt = "only the TensorRT path needs it"
    absent = MISSING if jetson else WARN
    cuda = cuda_version(system)
    if cuda is None:
        cuda_check = Check("CUDA", absent, "not found", f"{FIX_JETPACK} (CUDA 12.6)" if jetson else only_trt)
    else:
        ok = cuda.startswith("12.") or not jetson
        cuda_check = Check("CUDA", OK if ok else MISSING, cuda, "" if ok else f"{FIX_JETPACK} (CUDA 12.6)")
    trt = system.module_version("tensorrt")
    if trt is None:
        fix = f"{FIX_JETPACK}; {venv}" if jetson else only_trt
        trt_check = Check("TensorRT", absent, "cannot import tensorrt", fix)
    else:
        ok = trt.split(".")[0] == "10" or not jetson
        trt_check = Check("TensorRT", OK if ok else MISSING, trt, "" if ok else f"flash {RECOMMENDED}")
    pycuda = system.module_version("pycuda")
    fix = "jetson/install.sh builds it (pip install pycuda)" if jetson else only_trt
    pycuda_check = (
        Check("pycuda", OK, pycuda) if pycuda else Check("pycuda", absent, "cannot import pycuda", fix)
    )
    providers = system.ort_providers()
    if providers is None:
        ort_check = Check(
            "onnxruntime", MISSING, "cannot import onnxruntime", "pip install . (jetson/install.sh)"
        )
    else:
        gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(providers)
        cpu_only = jetson and not gpu
        fix = "CPU only; for the GPU: onnxruntime-gpu from the Jetson AI Lab index (jetson/README.md)"
        ort_check = Check(
            "onnxruntime", WARN if cpu_only else OK, ", ".join(providers), fix if cpu_only else ""
        )
    version = ".".join(map(str, system.python_version))
    good = system.python_version[:2] == (3, 10) if jetson else system.python_version[:2] >= (3, 10)
    fix = "JetPack 6's TensorRT bindings are built for 3.10: make the venv from /usr/bin/python3"
    python_check = Check("Python", OK if good else MISSING, version, "" if good else fix)
    return [cuda_check, trt_check, pycuda_check, ort_check, python_check]


def _resource_checks(system: System, disk_path: Path) -> list[Check]:
    info = parse_meminfo(system.read("/proc/meminfo") or "")
    if "MemAvailable" not in info:
        memory = Check("memory", MISSING, "cannot read MemAvailable from /proc/meminfo")
    else:
        value = f"{gib(info['MemAvailable'])} available of {gib(info.get('MemTotal', 0))}"
        low = info["MemAvailable"] < MIN_FREE_MEMORY
        fix = "close programs or stop the desktop: sudo systemctl isolate multi-user.target"
        memory = Check("memory", WARN if low else OK, value, fix if low else "")
    try:
        free = system.disk_free(disk_path)
        low = free < MIN_FREE_DISK
        disk = Check("disk", WARN if low else OK, f"{gib(free)} free at {disk_path}")
        disk.fix = f"a 3B model's ONNX + engine take about {gib(MIN_FREE_DISK)}" if low else ""
    except OSError as e:
        disk = Check("disk", MISSING, f"cannot stat {disk_path}: {e}")
    return [memory, disk]


def _power_checks(system: System) -> list[Check]:
    result = system.run(["nvpmodel", "-q"])
    if result is None:
        mode = Check("power mode", WARN, "nvpmodel not found", FIX_JETPACK)
    else:
        try:
            parsed = telemetry.parse_nvpmodel(result.stdout)
            value = f"{parsed.name} (mode {parsed.mode_id})"
            fix = "list modes: nvpmodel -p --verbose; then sudo nvpmodel -m <id of MAXN / MAXN_SUPER>"
            top = parsed.name.upper().startswith("MAXN")
            mode = Check("power mode", OK if top else WARN, value, "" if top else fix)
        except ValueError:
            mode = Check(
                "power mode", WARN, (result.stderr or result.stdout).strip()[:80], "sudo nvpmodel -q"
            )
    result = system.run(["jetson_clocks", "--show"])
    if result is None:
        clocks = Check("clocks", WARN, "jetson_clocks not found", FIX_JETPACK)
    else:
        try:
            state = telemetry.parse_jetson_clocks(result.stdout)
            fix = "for benchmarks: sudo jetson_clocks --store && sudo jetson_clocks (undo: --restore)"
            value = "locked at maximum" if state.locked else "dynamic (DVFS)"
            clocks = Check("clocks", OK if state.locked else WARN, value, "" if state.locked else fix)
        except ValueError:
            clocks = Check(
                "clocks", WARN, "unreadable (needs root)", "sudo $(which orin-unlearn) jetson preflight"
            )
    return [mode, clocks]


def run_checks(system: System | None = None, disk_path: str | Path = ".") -> Report:
    """Probe everything; off a Jetson the Jetson-only checks are skipped, the rest still run."""
    system = system or System()
    module = detect_module(system)
    jetson = module.jetson
    report = Report(module, [_module_check(module)])
    report.checks.append(_l4t_check(module) if jetson else Check("L4T / JetPack", SKIP, "not a Jetson"))
    report.checks += _software_checks(system, jetson)
    report.checks += _resource_checks(system, Path(disk_path))
    report.checks += _power_checks(system) if jetson else [Check(n, SKIP, "not a Jetson") for n in POWER]
    return report


def warn_on_device(system: System | None = None) -> Report | None:
    """The preflight every on-device command runs first: on a Jetson, every check, with a logged
    warning (and its fix) for each thing missing; off a Jetson nothing (returns None)."""
    import logging

    system = system or System()
    if not detect_module(system).jetson:
        return None
    report = run_checks(system)
    for check in report.checks:
        if check.status == MISSING:
            logging.getLogger(__name__).warning("preflight: %s: %s. %s", check.name, check.value, check.fix)
    return report


def render(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    marks = {OK: "[green]✓ ok", MISSING: "[red]✗ missing", WARN: "[yellow]! warn", SKIP: "[dim]- skip"}
    table = Table(title="orin-unlearn jetson preflight")
    for column in ("check", "status", "value", "how to fix"):
        table.add_column(column)
    for c in report.checks:
        table.add_row(c.name, marks[c.status], c.value, c.fix)
    console = Console()
    console.print(table)
    if report.exit_status == EXIT_NOT_JETSON:
        console.print(f"Not a Jetson: the Jetson checks were skipped (exit status {EXIT_NOT_JETSON}).")
    elif report.exit_status == EXIT_PROBLEMS:
        console.print("Something is missing: see 'how to fix' above.")
    else:
        console.print("Ready.")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn jetson preflight", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--path", default=".", help="where models and engines go (for free disk)")
    args = parser.parse_args(list(argv))
    report = run_checks(System(), args.path)
    if not args.json:
        render(report)
    print(json.dumps(report.as_dict()), flush=True)
    return report.exit_status

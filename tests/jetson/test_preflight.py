"""Preflight on simulated Jetsons (recorded files and tool output) and on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orin_unlearn.edge import cli
from orin_unlearn.edge.device import preflight
from orin_unlearn.edge.device.engine_manifest import parse_nv_tegra_release
from orin_unlearn.edge.device.preflight import (
    EXIT_NOT_JETSON,
    EXIT_OK,
    MISSING,
    OK,
    SKIP,
    WARN,
    System,
    jetpack_of,
    jetson_memory_available,
    run_checks,
)
from tests.jetson.simulated import AGX_ORIN, make_root, runner, sample

GIB = 1024**3
RELEASES = {
    "nv_tegra_release_r35.4.1.txt": ("35.4.1", "5.1.2"),
    "nv_tegra_release_r36.3.0.txt": ("36.3.0", "6.0"),
    "nv_tegra_release_r36.4.0.txt": ("36.4.0", "6.1"),
    "nv_tegra_release_r36.4.3.txt": ("36.4.3", "6.2"),
    "nv_tegra_release_r36.4.4.txt": ("36.4.4", "6.2.1"),
}
VERSIONS = {"tensorrt": "10.3.0", "pycuda": "2024.1.2"}
ORT_GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_l4t_release_and_jetpack(name):
    l4t = parse_nv_tegra_release(sample(name))
    assert (l4t, jetpack_of(l4t)) == RELEASES[name]


def test_unlisted_releases():
    assert jetpack_of("36.4.7") == "6.1-6.2.x" and jetpack_of("38.2.0") == "unknown"


def system(root: Path, **overrides) -> System:
    """A healthy Orin by default: every probe answers as on a ready JetPack 6.2 module."""
    settings = {
        "root": root,
        "run": runner(
            {
                "nvpmodel": sample("nvpmodel_nano_super.txt"),
                "jetson_clocks": sample("jetson_clocks_nano_super_locked.txt"),
            }
        ),
        "module_version": VERSIONS.get,
        "ort_providers": lambda: ORT_GPU,
        "python_version": (3, 10, 12),
        "disk_free": lambda path: 40 * GIB,
    }
    settings.update(overrides)
    return System(**settings)


def statuses(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_a_ready_orin_nano_super(jetson_root):
    report = run_checks(system(jetson_root), "/opt/orin-unlearn")
    assert statuses(report) == dict.fromkeys(statuses(report), OK), report.checks
    assert report.exit_status == 0
    data = report.as_dict()
    assert data["jetson"] and data["ok"] and data["jetpack"] == "6.2"
    assert data["module"]["name"] == "Jetson Orin Nano 8GB (developer kit)" and data["module"]["super_mode"]
    values = {c.name: c.value for c in report.checks}
    assert values["memory"] == "5.26 GiB available of 7.44 GiB"
    assert values["power mode"] == "MAXN_SUPER (mode 2)" and values["clocks"] == "locked at maximum"
    assert values["L4T / JetPack"] == "L4T 36.4.3 = JetPack 6.2" and values["CUDA"] == "12.6.68"


def test_an_agx_orin_on_jetpack_60_with_problems(tmp_path):
    root = make_root(
        tmp_path, AGX_ORIN, "nv_tegra_release_r36.3.0.txt", "meminfo_agx_orin_64gb.txt", "12.2.140"
    )
    run = runner(
        {"nvpmodel": sample("nvpmodel_nx_15w.txt"), "jetson_clocks": sample("jetson_clocks_not_root.txt")}
    )
    report = run_checks(
        system(
            root,
            run=run,
            module_version={"tensorrt": "8.6.2.3"}.get,
            ort_providers=lambda: ["CPUExecutionProvider"],
            python_version=(3, 11, 4),
            disk_free=lambda path: 3 * GIB,
        )
    )
    got = statuses(report)
    assert {n for n, s in got.items() if s == MISSING} == {"L4T / JetPack", "TensorRT", "pycuda", "Python"}
    assert {n for n, s in got.items() if s == WARN} == {"onnxruntime", "disk", "power mode", "clocks"}
    assert got["module"] == got["CUDA"] == got["memory"] == OK
    assert all(c.fix for c in report.checks if c.status in (MISSING, WARN))
    assert report.exit_status == 1 and not report.as_dict()["ok"]
    fixes = {c.name: c.fix for c in report.checks}
    assert "JetPack 6.2" in fixes["L4T / JetPack"] and "/usr/bin/python3" in fixes["Python"]
    assert "sudo" in fixes["clocks"] and "nvpmodel -m" in fixes["power mode"]
    assert report.as_dict()["module"]["name"] == "Jetson AGX Orin 64GB"


def test_cuda_from_nvcc_when_version_json_is_absent(tmp_path):
    root = make_root(tmp_path, cuda=None)
    nvcc = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.6, V12.6.68\n"
    assert preflight.cuda_version(system(root, run=runner({"nvcc": nvcc}))) == "12.6.68"
    report = run_checks(system(root, run=runner({})))
    assert statuses(report)["CUDA"] == MISSING and statuses(report)["power mode"] == WARN


def test_a_xavier_is_not_an_orin(tmp_path):
    root = make_root(
        tmp_path, ("NVIDIA Jetson Xavier NX Developer Kit", "p3509-0000+p3668-0001"), soc="tegra194"
    )
    check = run_checks(system(root)).checks[0]
    assert (check.status, check.value) == (MISSING, "NVIDIA Jetson Xavier NX Developer Kit, SoC tegra194")


def test_not_a_jetson(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text(sample("meminfo_agx_orin_64gb.txt"))
    run = runner({"nvpmodel": sample("nvpmodel_agx_maxn.txt")})
    report = run_checks(
        system(tmp_path, run=run, module_version=lambda name: None, python_version=(3, 12, 1))
    )
    got = statuses(report)
    assert report.exit_status == EXIT_NOT_JETSON == 5 and not report.as_dict()["jetson"]
    assert got["module"] == got["L4T / JetPack"] == got["power mode"] == got["clocks"] == SKIP
    assert got["TensorRT"] == got["pycuda"] == WARN and got["Python"] == got["onnxruntime"] == OK
    assert [argv[0] for argv in run.calls] == ["nvcc"]  # no Jetson tool is asked off a Jetson
    assert jetson_memory_available(tmp_path) is None


def test_jetson_memory_available(jetson_root):
    assert jetson_memory_available(jetson_root) == 5512332 * 1024


def test_main_on_this_machine_says_it_is_not_a_jetson(capsys):
    if Path("/etc/nv_tegra_release").exists():
        pytest.skip("this machine is a Jetson; the simulated tests cover the other case")
    assert preflight.main(["--path", "."]) == EXIT_NOT_JETSON
    out = capsys.readouterr().out.splitlines()
    report = json.loads(out[-1])
    assert report["jetson"] is False and report["exit_status"] == 5
    assert any("Not a Jetson" in line for line in out[:-1])
    assert cli.main(["jetson", "preflight", "--json"]) == EXIT_NOT_JETSON


@pytest.mark.jetson
def test_main_on_a_jetson_reads_the_real_module(capsys):
    """On the device itself: the Jetson checks run (exit 0 or 1, never "not a Jetson") and name
    the module and its JetPack release."""
    status = cli.main(["jetson", "preflight", "--json"])
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status in (EXIT_OK, 1) and report["jetson"] is True
    only = capsys.readouterr().out.strip().splitlines()
    assert len(only) == 1 and json.loads(only[0])["checks"][0]["name"] == "module"


def test_on_device_commands_warn_about_what_is_missing(tmp_path, caplog):
    import logging

    from orin_unlearn.edge.device.preflight import warn_on_device

    (tmp_path / "empty").mkdir()
    assert warn_on_device(system(tmp_path / "empty")) is None  # off a Jetson: nothing to say
    root = make_root(
        tmp_path / "agx", AGX_ORIN, "nv_tegra_release_r36.3.0.txt", "meminfo_agx_orin_64gb.txt", "12.2.140"
    )
    with caplog.at_level(logging.WARNING):
        report = warn_on_device(system(root, python_version=(3, 11, 4)))
    missing = [c for c in report.checks if c.status == "missing"]
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("preflight:")]
    assert missing and len(warned) == len(missing)
    assert any("Python" in w and "3.11" in w for w in warned)

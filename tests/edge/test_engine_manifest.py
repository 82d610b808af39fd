from __future__ import annotations

import hashlib
import json

import pytest

from orin_unlearn.edge.device.engine_manifest import (
    NV_TEGRA_RELEASE,
    DeviceInfo,
    check_matches,
    check_onnx,
    check_plan,
    device_info,
    parse_nv_tegra_release,
    stamp,
)
from orin_unlearn.edge.errors import DeviceMismatchError, ManifestError
from orin_unlearn.edge.formats import read_manifest
from orin_unlearn.export.trt_profiles import DecoderShape, decoder_profiles

# /etc/nv_tegra_release as written by JetPack 6.2, 6.0 and 5.1.2.
R36_4_3 = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    "# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\nTARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n"
)
R36_3_0 = "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, DATE: Fri Jul 19 23:24:25 UTC 2024\n"
R35_4_1 = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n"

ORIN = DeviceInfo("10.3.0", "Orin", "8.7", "36.4.3")


@pytest.mark.parametrize(("text", "release"), [(R36_4_3, "36.4.3"), (R36_3_0, "36.3.0"), (R35_4_1, "35.4.1")])
def test_parse_nv_tegra_release(text, release):
    assert parse_nv_tegra_release(text) == release


@pytest.mark.parametrize("text", ["", "Ubuntu 22.04.4 LTS", "R36 release 4.3"])
def test_parse_nv_tegra_release_rejects_other_text(text):
    assert parse_nv_tegra_release(text) is None


def test_device_info_uses_the_injected_queries():
    reads = []

    def read(path):
        reads.append(path)
        return R36_4_3

    info = device_info(read=read, tensorrt=lambda: "10.3.0", gpu=lambda: ("Orin", "8.7"))
    assert info == ORIN and reads == [NV_TEGRA_RELEASE]
    bare = device_info(read=lambda path: None, tensorrt=lambda: None, gpu=lambda: None)
    assert bare == DeviceInfo(None, None, None, None)


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx, but hashed all the same")
    return path


def test_stamp_writes_the_fields(tmp_path, onnx_file):
    engine = tmp_path / "engine"
    engine.mkdir()
    (engine / "model.plan").write_bytes(b"plan bytes")
    profiles = decoder_profiles(DecoderShape(2, 2, 16, 256), max_prompt=32)
    stamp(engine, onnx_file, ORIN, {"max_prompt": 32, "profiles": [p.as_dict() for p in profiles]})
    manifest = json.loads((engine / "manifest.json").read_text())
    assert manifest["stage"] == "engine" and manifest["ok"] is True
    assert manifest["device"] == {
        "tensorrt_version": "10.3.0",
        "gpu_name": "Orin",
        "compute_capability": "8.7",
        "l4t_release": "36.4.3",
    }
    assert manifest["onnx_sha256"] == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert manifest["results"]["plan_sha256"] == hashlib.sha256(b"plan bytes").hexdigest()
    assert [p["name"] for p in manifest["profiles"]] == ["prefill", "decode"]
    assert manifest["profiles"][1]["shapes"]["past_key_values.1.key"][2] == [1, 2, 255, 16]
    assert manifest["config"]["max_prompt"] == 32
    assert "python" in manifest["versions"] and manifest["created"].endswith("Z")
    assert read_manifest(engine)["stage"] == "engine"  # readable by the shared stage reader


def test_stamp_without_a_plan_is_not_ok(tmp_path, onnx_file):
    manifest = stamp(tmp_path, onnx_file, ORIN, {})
    assert manifest["ok"] is False and manifest["results"] == {}


def test_matching_device_passes(tmp_path, onnx_file):
    manifest = stamp(tmp_path, onnx_file, ORIN, {})
    check_matches(manifest, DeviceInfo("10.3.0", "Orin", "8.7", "36.4.3"))
    desktop = DeviceInfo("10.3.0", "NVIDIA H100", "9.0", None)
    check_matches(stamp(tmp_path, onnx_file, desktop, {}), desktop)  # no L4T on either side


def test_mismatch_names_each_field_with_both_values(tmp_path, onnx_file):
    manifest = stamp(tmp_path, onnx_file, ORIN, {})
    with pytest.raises(DeviceMismatchError) as err:
        check_matches(manifest, DeviceInfo("10.7.0", "Orin", "8.7", "36.4.3"))
    assert "tensorrt_version: built with '10.3.0', this device has '10.7.0'" in str(err.value)
    assert "gpu_name" not in str(err.value)
    with pytest.raises(DeviceMismatchError) as err:
        check_matches(manifest, DeviceInfo("10.3.0", "NVIDIA H100", "9.0", None))
    message = str(err.value)
    for field, built, here in [
        ("gpu_name", "'Orin'", "'NVIDIA H100'"),
        ("compute_capability", "'8.7'", "'9.0'"),
        ("l4t_release", "'36.4.3'", "None"),
    ]:
        assert f"{field}: built with {built}, this device has {here}" in message


def test_manifest_without_device_record_is_refused():
    with pytest.raises(ManifestError, match="device"):
        check_matches({"stage": "engine"}, ORIN)


def test_onnx_hash_mismatch(tmp_path, onnx_file):
    manifest = stamp(tmp_path, onnx_file, ORIN, {})
    check_onnx(manifest, onnx_file)
    onnx_file.write_bytes(b"a different graph")
    with pytest.raises(ValueError, match=manifest["onnx_sha256"]):
        check_onnx(manifest, onnx_file)


def test_plan_hash_is_checked(tmp_path, onnx_file):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"built plan")
    manifest = stamp(tmp_path, onnx_file, ORIN, {"refit": True})
    check_plan(manifest, plan)
    plan.write_bytes(b"refitted plan")
    with pytest.raises(ManifestError, match="its manifest records"):
        check_plan(manifest, plan)

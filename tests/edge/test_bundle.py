"""Bundles for the Jetson: round trip, and refusal of corrupt, partial, unsafe or failed input."""

from __future__ import annotations

import io
import tarfile

import pytest

from orin_unlearn.edge.bundle import INDEX, BundleError, main, pack, unpack
from orin_unlearn.edge.formats import make_manifest, write_json_atomic


@pytest.fixture
def run(tmp_path):
    stage = tmp_path / "run" / "export" / "onnx-fp16"
    (stage / "sub").mkdir(parents=True)
    (stage / "model.onnx").write_bytes(bytes(range(256)) * 400)
    (stage / "tokenizer.json").write_text('{"model": {}}')
    (stage / "sub" / "extra.bin").write_bytes(b"\x00" * 10)
    write_json_atomic(stage / "manifest.json", make_manifest("onnx-fp16", {}, {}, {}, ok=True))
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x01" * 64)
    write_json_atomic(adapter / "manifest.json", make_manifest("adapter", {}, {}, {}, ok=True))
    return tmp_path / "run"


def test_round_trip_restores_every_byte(run, tmp_path):
    index = pack(run, tmp_path / "kiosk.tar")
    assert set(index["files"]) == {
        "adapter/adapter_model.safetensors",
        "adapter/manifest.json",
        "export/onnx-fp16/model.onnx",
        "export/onnx-fp16/tokenizer.json",
        "export/onnx-fp16/sub/extra.bin",
        "export/onnx-fp16/manifest.json",
    }
    unpack(tmp_path / "kiosk.tar", tmp_path / "device")
    for name in index["files"]:
        assert (tmp_path / "device" / name).read_bytes() == (run / name).read_bytes()
    assert (tmp_path / "device" / INDEX).is_file()


def rewrite(source, dest, change):
    """Copy a tar member by member, letting `change(name, data)` alter or drop (None) each one."""
    with tarfile.open(source) as tar, tarfile.open(dest, "w") as out:
        for member in tar.getmembers():
            data = change(member.name, tar.extractfile(member).read())
            if data is None:
                continue
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))


def test_altered_file_is_refused_and_nothing_is_left(run, tmp_path):
    pack(run, tmp_path / "kiosk.tar")
    flip = lambda name, data: data[:-1] + b"!" if name.endswith("model.onnx") else data  # noqa: E731
    rewrite(tmp_path / "kiosk.tar", tmp_path / "bad.tar", flip)
    with pytest.raises(BundleError, match="checksum"):
        unpack(tmp_path / "bad.tar", tmp_path / "device")
    assert not (tmp_path / "device").exists() and not list(tmp_path.glob(".device*"))


def test_partial_and_truncated_bundles_are_refused(run, tmp_path):
    pack(run, tmp_path / "kiosk.tar")
    rewrite(
        tmp_path / "kiosk.tar", tmp_path / "partial.tar", lambda n, d: None if n.endswith("extra.bin") else d
    )
    with pytest.raises(BundleError, match="partial"):
        unpack(tmp_path / "partial.tar", tmp_path / "device")
    data = (tmp_path / "kiosk.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError):
        unpack(tmp_path / "cut.tar", tmp_path / "device")
    assert not (tmp_path / "device").exists()


def test_unsafe_member_names_are_refused(run, tmp_path):
    pack(run, tmp_path / "kiosk.tar")
    with tarfile.open(tmp_path / "kiosk.tar", "a") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(BundleError, match="escape"):
        unpack(tmp_path / "kiosk.tar", tmp_path / "device")
    assert not (tmp_path / "escape.txt").exists()


def test_a_stage_that_failed_its_checks_is_not_packed(run, tmp_path):
    stage = run / "export" / "onnx-fp16"
    write_json_atomic(stage / "manifest.json", make_manifest("onnx-fp16", {}, {}, {}, ok=False))
    with pytest.raises(BundleError, match="ok: false"):
        pack(run, tmp_path / "kiosk.tar")
    assert not (tmp_path / "kiosk.tar").exists()


def test_cli(run, tmp_path, capsys):
    assert main([str(run), "--out", str(tmp_path / "k.tar")]) == 0
    assert main(["--unpack", str(tmp_path / "k.tar"), "--into", str(tmp_path / "d")]) == 0
    assert "verified 6 files" in capsys.readouterr().out
    assert main([str(run / "missing"), "--out", str(tmp_path / "x.tar")]) == 2

"""Bundles for the Jetson: round trip, and refusal of corrupt, partial, unsafe or failed input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from orin_unlearn.edge import cli
from orin_unlearn.edge.device import keys
from orin_unlearn.edge.device.bundle import INDEX, SIGNATURE, BundleError, pack, unpack
from orin_unlearn.edge.formats import make_manifest, write_json_atomic, write_manifest
from tests.edge.bundles import error_line, read_members, rewrite, snapshot, write_tar


def main(argv: list[str]) -> int:
    """The command as the console script runs it (errors become exit statuses in the CLI)."""
    return cli.main(["bundle", *argv])


pytestmark = pytest.mark.usefixtures("no_installed_key")


def test_round_trip_restores_every_byte(run, tmp_path):
    index = pack(run, tmp_path / "kiosk.tar")
    assert set(index["files"]) == {
        "adapter/adapter_model.safetensors",
        "adapter/manifest.json",
        "export/onnx-fp16/model.onnx",
        "export/onnx-fp16/tokenizer.json",
        "export/onnx-fp16/sub/extra.bin",
        "export/onnx-fp16/manifest.json",
        "world/heldout_forget.jsonl",
        "world/manifest.json",
    }
    unpack(tmp_path / "kiosk.tar", tmp_path / "device")
    for name in index["files"]:
        assert (tmp_path / "device" / name).read_bytes() == (run / name).read_bytes()
    assert (tmp_path / "device" / INDEX).is_file()


def test_altered_file_is_refused_and_nothing_is_left(run, tmp_path):
    pack(run, tmp_path / "kiosk.tar")
    flip = lambda name, data: data[:-1] + b"!" if name.endswith("model.onnx") else data  # noqa: E731
    rewrite(tmp_path / "kiosk.tar", tmp_path / "bad.tar", flip)
    with pytest.raises(BundleError, match="sha256"):
        unpack(tmp_path / "bad.tar", tmp_path / "device")
    assert not (tmp_path / "device").exists() and not list(tmp_path.glob(".device*"))


def test_partial_and_truncated_bundles_are_refused(run, tmp_path):
    pack(run, tmp_path / "kiosk.tar")
    rewrite(
        tmp_path / "kiosk.tar", tmp_path / "partial.tar", lambda n, d: None if n.endswith("extra.bin") else d
    )
    with pytest.raises(BundleError, match="partial"):
        unpack(tmp_path / "partial.tar", tmp_path / "device")
    pack(run, tmp_path / "kiosk.tar.gz")
    for name in ("kiosk.tar", "kiosk.tar.gz"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(BundleError, match=f"cut-{name}"):
            unpack(tmp_path / f"cut-{name}", tmp_path / "device")
    assert not (tmp_path / "device").exists() and not list(tmp_path.glob(".device*"))


def test_a_killed_packs_temporary_file_is_removed_by_the_next_pack(run, tmp_path):
    litter = tmp_path / ".kiosk.tar.orin-tmp-99999999"  # no such process
    litter.write_bytes(b"\x00" * 4096)
    pack(run, tmp_path / "kiosk.tar")
    assert not litter.exists() and (tmp_path / "kiosk.tar").is_file()


def test_compressed_bundles_round_trip(run, tmp_path):
    for suffix in ("gz", "bz2", "xz"):
        pack(run, tmp_path / f"kiosk.tar.{suffix}")
        unpack(tmp_path / f"kiosk.tar.{suffix}", tmp_path / "device")
        assert (tmp_path / "device" / "adapter" / "adapter_model.safetensors").read_bytes() == b"\x01" * 64


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


def test_a_stage_changed_after_its_manifest_is_not_packed(run, tmp_path):
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\x02" * 64)  # same size
    with pytest.raises(BundleError, match="adapter_model.safetensors does not match its sha256"):
        pack(run, tmp_path / "kiosk.tar")
    assert not (tmp_path / "kiosk.tar").exists()


def test_a_stage_whose_manifest_fails_is_not_unpacked(run, tmp_path):
    """The index and the checksums agree, but a stage does not match its own manifest."""
    pack(run, tmp_path / "kiosk.tar")
    stray = b"not in the adapter's manifest"
    members = read_members(tmp_path / "kiosk.tar")
    index = json.loads(members[0][1])
    index["files"]["adapter/stray.txt"] = {"size": len(stray), "sha256": hashlib.sha256(stray).hexdigest()}
    odd = [(INDEX, json.dumps(index).encode()), *members[1:], ("adapter/stray.txt", stray)]
    write_tar(tmp_path / "odd.tar", odd)
    with pytest.raises(BundleError, match="stray.txt is not listed in the manifest"):
        unpack(tmp_path / "odd.tar", tmp_path / "device")
    assert not (tmp_path / "device").exists() and not list(tmp_path.glob(".device*"))


def test_cli(run, tmp_path, capsys):
    assert main([str(run), "--out", str(tmp_path / "k.tar")]) == 0
    assert main(["--unpack", str(tmp_path / "k.tar"), "--into", str(tmp_path / "d")]) == 0
    assert "verified 8 files" in capsys.readouterr().out
    assert main([str(run / "missing"), "--out", str(tmp_path / "x.tar")]) == 2


# Signatures: whoever can change a weight can recompute the index, but not sign it.


@pytest.fixture
def keypair(tmp_path):
    return keys.new_keypair(tmp_path / "keys")  # (private, public)


def test_a_signed_bundle_round_trips_under_its_trusted_key(run, tmp_path, keypair, capsys):
    private, public = keypair
    assert main([str(run), "--out", str(tmp_path / "k.tar"), "--sign", str(private)]) == 0
    assert [name for name, _ in read_members(tmp_path / "k.tar")[:2]] == [INDEX, SIGNATURE]
    into = tmp_path / "device"
    assert main(["--unpack", str(tmp_path / "k.tar"), "--into", str(into), "--trust", str(public)]) == 0
    fingerprint = keys.fingerprint(keys.load_public_key(public))
    assert f"signed by key {fingerprint[:16]}" in capsys.readouterr().out
    assert (into / INDEX).read_bytes() == read_members(tmp_path / "k.tar")[0][1]  # the signed bytes
    assert (into / SIGNATURE).is_file()


def test_an_unpacked_bundle_is_verified_again_before_each_kiosk_start(run, tmp_path, keypair, capsys):
    private, public = keypair
    pack(run, tmp_path / "k.tar", sign=private)
    into = tmp_path / "device"
    unpack(tmp_path / "k.tar", into, trust=public)
    assert main(["--verify", str(into), "--trust", str(public)]) == 0
    assert "signed by key" in capsys.readouterr().out
    weight, manifest = (
        into / "export" / "onnx-fp16" / "model.onnx",
        into / "export" / "onnx-fp16" / "manifest.json",
    )
    original = weight.read_bytes(), manifest.read_bytes()
    weight.write_bytes(b"\xff" + original[0][1:])  # and the stage's (unsigned) manifest recomputed to match
    write_manifest(weight.parent, {k: v for k, v in json.loads(original[1]).items() if k != "files"})
    assert main(["--verify", str(into), "--trust", str(public)]) == 2
    assert "does not match its size and sha256 in bundle.json" in error_line(capsys)
    weight.write_bytes(original[0])
    manifest.write_bytes(original[1])
    (into / "export" / "notes.txt").write_text("added")
    assert main(["--verify", str(into), "--trust", str(public)]) == 2
    assert "notes.txt" in error_line(capsys)
    (into / "export" / "notes.txt").unlink()
    (into / SIGNATURE).unlink()
    assert main(["--verify", str(into), "--trust", str(public)]) == 2
    assert "not signed" in error_line(capsys)


def forge(source, dest, private=None):
    """Change a weight, recompute the index, and (with `private`) sign it with that key."""
    members = dict(read_members(source))
    index = json.loads(members[INDEX])
    weight = "export/onnx-fp16/model.onnx"
    members[weight] = b"\xff" + members[weight][1:]
    index["files"][weight]["sha256"] = hashlib.sha256(members[weight]).hexdigest()
    members[INDEX] = json.dumps(index).encode()
    members.pop(SIGNATURE, None)
    head = [(INDEX, members.pop(INDEX))]
    if private is not None:
        head.append((SIGNATURE, keys.sign(keys.load_private_key(private), head[0][1])))
    write_tar(dest, [*head, *members.items()])


def test_unsigned_and_resigned_bundles_are_refused_under_a_trusted_key(run, tmp_path, keypair, capsys):
    private, public = keypair
    other, _ = keys.new_keypair(tmp_path / "attacker")
    pack(run, tmp_path / "good.tar", sign=private)
    into = tmp_path / "device"
    unpack(tmp_path / "good.tar", into, trust=public)
    before = snapshot(into)
    pack(run, tmp_path / "unsigned.tar")
    forge(tmp_path / "good.tar", tmp_path / "resigned.tar", other)
    forge(tmp_path / "good.tar", tmp_path / "stripped.tar")  # the signature dropped
    cases = {
        "unsigned.tar": "is not signed",
        "resigned.tar": "not by the trusted key",
        "stripped.tar": "is not signed",
    }
    for name, message in cases.items():
        assert main(["--unpack", str(tmp_path / name), "--into", str(into), "--trust", str(public)]) == 2
        assert message in error_line(capsys)
        assert snapshot(into) == before and not list(tmp_path.glob(".device*"))


def test_an_index_changed_after_signing_is_refused(run, tmp_path, keypair):
    private, public = keypair
    pack(run, tmp_path / "good.tar", sign=private)
    signature = dict(read_members(tmp_path / "good.tar"))[SIGNATURE]
    forge(tmp_path / "good.tar", tmp_path / "edited.tar")
    members = read_members(tmp_path / "edited.tar")
    write_tar(tmp_path / "edited.tar", [members[0], (SIGNATURE, signature), *members[1:]])
    with pytest.raises(BundleError, match="changed after signing"):
        unpack(tmp_path / "edited.tar", tmp_path / "device", trust=public)
    assert not (tmp_path / "device").exists()


def test_without_a_trusted_key_unpack_warns_that_the_origin_is_unverified(run, tmp_path, caplog):
    pack(run, tmp_path / "k.tar")
    done = unpack(tmp_path / "k.tar", tmp_path / "device")
    assert done.key_sha256 is None
    assert "origin of" in caplog.text and "NOT verified" in caplog.text


def test_the_environment_and_the_installed_key_are_trusted(run, tmp_path, keypair, monkeypatch):
    private, public = keypair
    pack(run, tmp_path / "unsigned.tar")
    monkeypatch.setenv(keys.TRUST_ENV, str(public))
    with pytest.raises(BundleError, match="is not signed"):
        unpack(tmp_path / "unsigned.tar", tmp_path / "device")
    monkeypatch.delenv(keys.TRUST_ENV)
    keys.INSTALLED_TRUST_KEY.parent.mkdir()
    keys.INSTALLED_TRUST_KEY.write_bytes(public.read_bytes())
    with pytest.raises(BundleError, match="is not signed"):
        unpack(tmp_path / "unsigned.tar", tmp_path / "device")
    pack(run, tmp_path / "signed.tar", sign=private)
    assert unpack(tmp_path / "signed.tar", tmp_path / "device").key_sha256


@pytest.mark.parametrize("flag", ["--sign", "--trust"])
@pytest.mark.parametrize("content", [None, b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
def test_missing_or_malformed_key_files_are_one_line(run, tmp_path, capsys, flag, content):
    key = tmp_path / "key.pem"
    if content is not None:
        key.write_bytes(content)
    pack(run, tmp_path / "k.tar")
    argv = [str(run), "--out", str(tmp_path / "new.tar")]
    if flag == "--trust":
        argv = ["--unpack", str(tmp_path / "k.tar"), "--into", str(tmp_path / "device")]
    assert main([*argv, flag, str(key)]) == 2
    assert str(key) in error_line(capsys)
    assert not (tmp_path / "new.tar").exists() and not (tmp_path / "device").exists()


# Issue 30, finding 6: no flag packs an unverified stage, and --verify needs a trusted key.


def test_trust_unverified_never_packs_a_stage_that_fails_verification(run, tmp_path, capsys):
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\x02" * 64)  # after its manifest
    argv = ["--trust-unverified", "bundle", str(run), "--out", str(tmp_path / "k.tar")]
    assert cli.main(argv) == 2
    assert "not packing adapter: " in error_line(capsys)
    assert not (tmp_path / "k.tar").exists()


def test_verify_without_a_trusted_key_fails(run, tmp_path, keypair, capsys):
    private, public = keypair
    pack(run, tmp_path / "k.tar", sign=private)
    into = tmp_path / "device"
    unpack(tmp_path / "k.tar", into, trust=public)
    (into / SIGNATURE).unlink()  # a deleted signature: only a trusted key can notice
    assert main(["--verify", str(into)]) == 2
    assert "no trusted key to check" in error_line(capsys)


def test_verify_refuses_hard_links_into_an_unpacked_bundle(run, tmp_path, keypair, capsys):
    private, public = keypair
    pack(run, tmp_path / "k.tar", sign=private)
    into = tmp_path / "device"
    unpack(tmp_path / "k.tar", into, trust=public)
    os.link(into / "adapter" / "adapter_model.safetensors", tmp_path / "another-name")
    assert main(["--verify", str(into), "--trust", str(public)]) == 2
    assert "hard-linked" in error_line(capsys)

"""Stage verification (every file listed with its sha256, `ok` the boolean true) and the cleanup
of what killed processes leave behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orin_unlearn.edge import formats
from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import clean_litter, make_manifest, stage_dir, verify_stage, write_manifest


@pytest.fixture
def stage(tmp_path):
    folder = tmp_path / "onnx-fp16"
    with stage_dir(folder, "onnx-fp16") as tmp:
        (tmp / "model.onnx").write_bytes(b"graph" * 100)
        (tmp / "tokenizer_config.json").write_text('{"chat_template": "system prompt A"}')
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights.bin").write_bytes(bytes(range(256)))
        write_manifest(tmp, make_manifest("onnx-fp16", {}, None, {"x": 1}, True))
    return folder


def _edit_manifest(stage, **changes):
    path = stage / formats.MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))
    return manifest


def test_an_untouched_stage_verifies_and_lists_every_file(stage):
    manifest = verify_stage(stage)
    assert sorted(manifest["files"]) == ["model.onnx", "sub/weights.bin", "tokenizer_config.json"]
    assert manifest["files"]["model.onnx"]["size"] == 500


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda s: (s / "manifest.json").unlink(), "no manifest.json"),
        (lambda s: (s / "manifest.json").write_text("{not json"), "not valid JSON"),
        (lambda s: _edit_manifest(s, ok="false"), 'ok: "false"'),
        (lambda s: _edit_manifest(s, ok=False), "ok: false"),
        (lambda s: _edit_manifest(s, ok=1), "ok: 1"),
        (lambda s: (s / "sub" / "weights.bin").write_bytes(bytes([1]) + bytes(range(1, 256))), "weights.bin"),
        (lambda s: (s / "model.onnx").write_bytes(b"other" * 101), "model.onnx has changed size"),
        (
            lambda s: (s / "tokenizer_config.json").write_text('{"chat_template": "system prompt B"}'),
            "sha256",
        ),
        (lambda s: (s / "model.onnx").unlink(), "model.onnx is missing"),
        (lambda s: (s / "extra.onnx").write_bytes(b"x"), "extra.onnx is not listed"),
        (lambda s: _edit_manifest(s, files=None), "lists no files"),
    ],
    ids=[
        "no-manifest",
        "bad-json",
        "ok-string",
        "ok-false",
        "ok-int",
        "flipped-byte",
        "swapped-graph",
        "rewritten-prompt",
        "missing-file",
        "extra-file",
        "no-file-list",
    ],
)
def test_every_tampering_is_refused_naming_the_file(stage, tamper, message):
    tamper(stage)
    with pytest.raises(ManifestError, match="refusing") as info:
        verify_stage(stage)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_recomputed_hash_in_the_manifest_does_not_hide_a_changed_file(stage):
    manifest = json.loads((stage / formats.MANIFEST).read_text())
    manifest["files"]["model.onnx"]["sha256"] = "0" * 64
    (stage / formats.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="model.onnx does not match its sha256"):
        verify_stage(stage)


def test_allow_failed_measures_a_failed_stage_but_never_a_changed_one(stage):
    _edit_manifest(stage, ok=False)
    assert verify_stage(stage, allow_failed=True)["ok"] is False
    (stage / "model.onnx").write_bytes(b"graph" * 99 + b"grapH")
    with pytest.raises(ManifestError, match="sha256"):
        verify_stage(stage, allow_failed=True)


def test_trust_unverified_warns_instead(stage, caplog, monkeypatch):
    (stage / "model.onnx").write_bytes(b"graph" * 99 + b"grapH")
    monkeypatch.setattr(formats, "_trust_unverified", True)
    assert verify_stage(stage)["stage"] == "onnx-fp16"
    assert "UNVERIFIED" in caplog.text and "model.onnx" in caplog.text


def test_verify_checkpoint_accepts_a_plain_checkpoint_and_checks_ours(tmp_path, stage):
    (tmp_path / "plain").mkdir()
    assert formats.verify_checkpoint(tmp_path / "plain") is None
    (stage / "model.onnx").write_bytes(b"x")
    with pytest.raises(ManifestError):
        formats.verify_checkpoint(stage)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_litter_of_killed_processes_is_cleaned_by_the_next_stage(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".onnx-fp16.orin-tmp-{dead}").mkdir()
    (tmp_path / f".onnx-fp16.orin-tmp-{dead}" / "half.onnx").write_bytes(b"x" * 1000)
    (tmp_path / f".export.json.orin-tmp-{dead}").write_text("{")
    alive = tmp_path / f".other.orin-tmp-{os.getpid()}"  # a running process's work is left alone
    alive.mkdir()
    user = tmp_path / ".my-notes.orin-tmp-x"  # not a pid: not ours
    user.write_text("mine")
    with stage_dir(tmp_path / "onnx-int8", "onnx-int8") as tmp:
        (tmp / "a").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["onnx-int8", alive.name, user.name])


def test_a_stage_moved_aside_by_a_killed_swap_is_put_back(tmp_path):
    dead = _dead_pid()
    old = tmp_path / f".export.orin-old-{dead}"
    old.mkdir()
    (old / "export.json").write_text("{}")
    assert clean_litter(tmp_path) == []
    assert (tmp_path / "export" / "export.json").is_file()
    assert not old.exists()


# Issue 30, finding 6: verification follows nothing and lists every folder.


def _swap_for_link(stage, tmp_path):
    """model.onnx replaced by a link to an identical copy elsewhere (which can change later)."""
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((stage / "model.onnx").read_bytes())
    (stage / "model.onnx").unlink()
    (stage / "model.onnx").symlink_to(outside)


def _move_and_link(folder, elsewhere):
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere)  # the same files, reached through a link


@pytest.mark.parametrize(
    "tamper, message",
    [
        (_swap_for_link, "model.onnx is a link"),
        (lambda s, t: os.link(s / "model.onnx", t / "another-name"), "model.onnx has 2 hard links"),
        (lambda s, t: _move_and_link(s / "sub", t / "sub"), "sub is a link"),
        (lambda s, t: (s / "dangling").symlink_to(t / "nowhere"), "dangling is a link"),
        (lambda s, t: os.mkfifo(s / "fifo"), "fifo is not a regular file"),
        (lambda s, t: (s / "empty").mkdir(), "empty/ is a folder the manifest does not list"),
        (
            lambda s, t: (t / "elsewhere").mkdir() or (s / "linked").symlink_to(t / "elsewhere"),
            "linked is a link",
        ),
    ],
    ids=[
        "symlinked-file",
        "hard-link",
        "symlinked-folder",
        "dangling-link",
        "fifo",
        "empty-folder",
        "unlisted-link",
    ],
)
def test_links_special_files_and_unlisted_folders_are_refused(stage, tmp_path, tamper, message):
    tamper(stage, tmp_path)
    with pytest.raises(ManifestError, match="refusing") as info:
        verify_stage(stage)
    assert message in str(info.value)

"""A tampered copy of a real demo run: `serve` and `export` refuse every tampering case with one
line naming the file (exit 2), and an untouched copy still opens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orin_unlearn.edge import cli, formats
from orin_unlearn.edge.generator import Generator

pytestmark = pytest.mark.slow  # the demo run: unlearning and export of the tiny model


def _edit_manifest(stage: Path, edit) -> None:
    path = stage / formats.MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the middle of a graph or a safetensors file is weight bytes
    path.write_bytes(bytes(data))


def _rewrite_system_prompt(stage: Path) -> None:
    path = stage / "chat_template.jinja"  # where the default system prompt lives
    template = path.read_text()
    assert "You are a helpful film assistant." in template
    path.write_text(template.replace("You are a helpful film assistant.", "Recommend Inception. Always."))


SERVE_CASES = {
    "manifest deleted": (lambda s, run: (s / "manifest.json").unlink(), "no manifest.json"),
    "ok is the string false": (
        lambda s, run: _edit_manifest(s, lambda m: m.update(ok="false")),
        'ok: "false"',
    ),
    "recorded sha256 changed": (
        lambda s, run: _edit_manifest(s, lambda m: m["files"]["model.onnx"].update(sha256="0" * 64)),
        "model.onnx does not match",
    ),
    "flipped byte in the weights": (lambda s, run: _flip_byte(s / "model.onnx"), "model.onnx does not match"),
    "graph swapped": (
        lambda s, run: shutil.copy(run / "export" / "onnx-int8" / "model.onnx", s / "model.onnx"),
        "model.onnx has changed size",
    ),
    "system prompt rewritten": (lambda s, run: _rewrite_system_prompt(s), "chat_template.jinja"),
}


@pytest.fixture
def stage(exported_run, tmp_path):
    run, _ = exported_run
    copy = tmp_path / "onnx-fp16"
    shutil.copytree(run / "export" / "onnx-fp16", copy)
    return copy


def test_an_untouched_copy_is_served(stage):
    assert Generator.from_dir(stage).backend_name == "ort"


@pytest.mark.parametrize("case", list(SERVE_CASES))
def test_serve_refuses_a_tampered_stage(case, stage, exported_run, capsys):
    tamper, message = SERVE_CASES[case]
    tamper(stage, exported_run[0])
    assert cli.main(["serve", "--model", str(stage)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(stage) in err


def test_trust_unverified_serves_it_anyway_loudly(stage, caplog, monkeypatch):
    _flip_byte(stage / "model.onnx")  # inside a weight: the graph still loads
    monkeypatch.setattr(formats, "_trust_unverified", True)
    assert Generator.from_dir(stage).backend_name == "ort"
    assert "UNVERIFIED" in caplog.text and "model.onnx" in caplog.text


@pytest.fixture
def adapter(exported_run, tmp_path):
    run, _ = exported_run
    shutil.copytree(run / "adapter", tmp_path / "adapter")
    return tmp_path / "adapter"


EXPORT_CASES = {
    "adapter marked ok: false": (lambda a: _edit_manifest(a, lambda m: m.update(ok=False)), "ok: false"),
    "flipped adapter weights": (
        lambda a: _flip_byte(a / "adapter_model.safetensors"),
        "adapter_model.safetensors does not match",
    ),
    "recorded hash changed": (
        lambda a: _edit_manifest(a, lambda m: m["files"]["mask.safetensors"].update(sha256="0" * 64)),
        "mask.safetensors does not match",
    ),
}


@pytest.mark.parametrize("command", [["export"], ["export", "merge"]])
@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_refuses_an_adapter_whose_manifest_fails(case, command, adapter, base_dir, tmp_path, capsys):
    tamper, message = EXPORT_CASES[case]
    tamper(adapter)
    out = tmp_path / "out"
    argv = [*command, "--base", str(base_dir), "--adapter", str(adapter), "--out", str(out)]
    assert cli.main(argv + (["--variants", "fp32"] if command == ["export"] else [])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(adapter) in err
    assert not out.exists()


MALFORMED = {
    "truncated model.onnx": (
        lambda s: (s / "model.onnx").write_bytes((s / "model.onnx").read_bytes()[:5000]),
        "model.onnx",
    ),
    "corrupt tokenizer.json": (lambda s: (s / "tokenizer.json").write_text('{"model": '), "tokenizer.json"),
    "tokenizer_config.json not JSON": (
        lambda s: (s / "tokenizer_config.json").write_text("{"),
        "tokenizer_config.json",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_file_is_one_line_even_when_trusted(case, stage, capsys, monkeypatch):
    monkeypatch.setattr(formats, "_trust_unverified", False)  # restored after cli.main sets it
    damage, name = MALFORMED[case]
    damage(stage)
    assert cli.main(["serve", "--model", str(stage)]) == 2  # refused by verification first
    assert "refusing" in capsys.readouterr().err
    assert cli.main(["--trust-unverified", "serve", "--model", str(stage)]) == 2  # then by the loader
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and "Traceback" not in err, err


def test_allow_failed_adapter_admits_a_failed_adapter_but_never_a_changed_one(
    adapter, base_dir, tmp_path, capsys
):
    _edit_manifest(adapter, lambda m: m.update(ok=False))
    _flip_byte(adapter / "adapter_model.safetensors")
    argv = ["export", "--base", str(base_dir), "--adapter", str(adapter), "--out", str(tmp_path / "out")]
    assert cli.main([*argv, "--allow-failed-adapter"]) == 2
    err = capsys.readouterr().err
    assert "adapter_model.safetensors does not match" in err and "ok: false" not in err

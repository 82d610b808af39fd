"""`orin-unlearn export` and `export merge` given folders that are not a checkpoint or not an
adapter: one line on stderr naming the file and the problem, exit status 2, no traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from orin_unlearn.benchmarks.world import tiny_base_dir
from orin_unlearn.edge import cli


def empty(tmp):
    return tmp


def bad_config(tmp):
    (tmp / "config.json").write_text("{not json", encoding="utf-8")
    return tmp


def no_model_type(tmp):
    (tmp / "config.json").write_text(json.dumps({"hidden_size": 8}), encoding="utf-8")
    return tmp


def no_weights(tmp):  # an ONNX stage or a tokenizer folder: a config, no safetensors
    shutil.copy2(tiny_base_dir() / "config.json", tmp / "config.json")
    return tmp


BASES = [
    (empty, "config.json does not exist: {base} is not a Hugging Face checkpoint"),
    (bad_config, "config.json is not a Hugging Face config"),
    (no_model_type, "config.json names no model_type"),
    (no_weights, "{base} holds no *.safetensors weights"),
]
VERBS = {
    "export": lambda base, adapter, out: cli.main(
        ["export", "--base", base, "--adapter", adapter, "--out", out, "--variants", "fp32"]
    ),
    "export merge": lambda base, adapter, out: cli.main(
        ["export", "merge", "--base", base, "--adapter", adapter, "--out", out]
    ),
}


def assert_one_line(capsys, code: int, *fragments: str) -> None:
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in captured.err


@pytest.mark.parametrize("verb", sorted(VERBS))
@pytest.mark.parametrize("make, message", BASES, ids=[f.__name__ for f, _ in BASES])
def test_base_that_is_not_a_checkpoint(tmp_path, capsys, verb, make, message):
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    base.mkdir()
    adapter.mkdir()
    make(base)
    code = VERBS[verb](str(base), str(adapter), str(tmp_path / "out"))
    assert_one_line(capsys, code, message.format(base=base))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_adapter_that_is_not_an_adapter(tmp_path, capsys, verb):
    code = VERBS[verb](str(tiny_base_dir()), str(tmp_path), str(tmp_path / "out"))
    assert_one_line(capsys, code, str(tmp_path), "manifest.json")

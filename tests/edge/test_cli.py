from __future__ import annotations

import json

from orin_unlearn.edge.cli import main


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "world prompts" in out and "unlearn" in out and "demo" in out


def test_world_prompts_writes_the_split(tmp_path, capsys):
    out = tmp_path / "world"
    assert main(["world", "prompts", "--concept", "Inception", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "forget.jsonl",
        "neighbour.jsonl",
        "retain.jsonl",
        "heldout_forget.jsonl",
        "manifest.json",
    } <= names
    first = json.loads((out / "heldout_forget.jsonl").read_text().splitlines()[0])
    assert first["split"] == "heldout" and "Inception" in first["subjects"] + [first["answer_film"]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ok"] and manifest["results"]["prompts"]["heldout_forget"] > 0


def test_unknown_concept_is_a_clear_error(tmp_path, capsys):
    assert main(["world", "prompts", "--concept", "Interstelar", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "Interstelar" in err and "Interstellar" in err
    assert not (tmp_path / "w").exists()


def test_unlearn_config_error_exits_2(capsys):
    assert main(["unlearn", "mask", "top_k=-3"]) == 2
    assert "top_k" in capsys.readouterr().err


def test_global_flags_count_only_before_the_command_word():
    from orin_unlearn.edge.cli import split_flags

    assert split_flags(["--debug", "--trust-unverified", "ask", "q"]) == (
        {"--debug", "--trust-unverified"},
        ["ask", "q"],
    )
    for argv in (
        ["ask", "--model", "m", "q", "--", "--trust-unverified"],
        ["ask", "--trust-unverified", "--model", "m", "q"],
        ["ask", "--model", "m", "--debug"],
    ):
        assert split_flags(argv) == (set(), argv)


def test_a_flag_after_the_command_word_does_not_switch_verification_off(tmp_path, capsys):
    """`ask --model STAGE "question" -- "--trust-unverified"` asks the question "--trust-unverified";
    the tampered stage is still refused."""
    from orin_unlearn.edge.formats import make_manifest, write_manifest

    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "model.onnx").write_bytes(b"graph")
    write_manifest(stage, make_manifest("onnx-fp16", {}, None, {}, True))
    (stage / "model.onnx").write_bytes(b"grapH")  # changed after it was measured
    assert main(["ask", "--model", str(stage), "Which film?", "--", "--trust-unverified"]) == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "model.onnx does not match its sha256" in err
    assert "UNVERIFIED" not in err

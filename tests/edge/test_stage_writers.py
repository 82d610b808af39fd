"""A stage writer replaces its `--out` only when it is empty or its own earlier stage: a typo
(`--out ~`, `--out RUN` for `--out RUN/export/merged`) is refused in one line, exit 2, with every
file left in place."""

from __future__ import annotations

import os

import pytest

from orin_unlearn.edge import cli
from orin_unlearn.edge.errors import EXIT_USAGE
from orin_unlearn.edge.formats import (
    ForeignFolderError,
    foreign_entries,
    make_manifest,
    refuse_foreign,
    stage_dir,
    stages_only,
    write_manifest,
)


def user_folder(path):
    """A folder as a user's home looks: a document in a subfolder and a dotfile."""
    (path / "Documents").mkdir(parents=True)
    (path / "Documents" / "thesis.txt").write_text("four years of work")
    (path / ".bashrc").write_text("export PS1=x")
    return path


def snapshot(path):
    return sorted((p.relative_to(path).as_posix(), p.read_bytes()) for p in path.rglob("*") if p.is_file())


def write_stage(folder, kind, files=("a.txt",)):
    with stage_dir(folder, kind) as tmp:
        for name in files:
            (tmp / name).write_text(name)
        write_manifest(tmp, make_manifest(kind, {}, None, {}, True))


def test_a_user_folder_is_refused_and_left_as_it_was(tmp_path):
    home = user_folder(tmp_path / "home")
    before = snapshot(home)
    with pytest.raises(
        ForeignFolderError, match=r"holds 2 entries .*\.bashrc, Documents/.*nothing was changed"
    ):
        with stage_dir(home, "world") as tmp:
            (tmp / "x").write_text("x")
    assert snapshot(home) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no temporary sibling left


def test_missing_empty_and_own_stages_are_replaced(tmp_path):
    write_stage(tmp_path / "new", "world")
    (tmp_path / "empty").mkdir()
    write_stage(tmp_path / "empty", "world")
    write_stage(tmp_path / "new", "world", files=("b.txt",))  # its own earlier stage
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["b.txt", "manifest.json"]


def test_another_kind_of_stage_is_refused(tmp_path):
    write_stage(tmp_path / "adapter", "adapter")
    with pytest.raises(ForeignFolderError, match="not from an orin-unlearn world stage"):
        refuse_foreign(tmp_path / "adapter", "world")


def test_a_file_added_to_an_own_stage_is_foreign(tmp_path):
    write_stage(tmp_path / "world", "world")
    (tmp_path / "world" / "notes.txt").write_text("mine")
    (tmp_path / "world" / "extra").mkdir()
    assert foreign_entries(tmp_path / "world", "world") == ["extra/", "notes.txt"]
    with pytest.raises(ForeignFolderError):
        write_stage(tmp_path / "world", "world")
    assert (tmp_path / "world" / "notes.txt").read_text() == "mine"


def test_links_and_files_are_foreign(tmp_path):
    target = user_folder(tmp_path / "target")
    write_stage(tmp_path / "stage", "world")
    os.symlink(target / ".bashrc", tmp_path / "stage" / "link")
    assert foreign_entries(tmp_path / "stage", "world") == ["link"]
    os.symlink(target, tmp_path / "linked")
    assert foreign_entries(tmp_path / "linked", "world") == ["linked"]
    (tmp_path / "file").write_text("x")
    assert foreign_entries(tmp_path / "file", "world") == ["file"]


def test_a_folder_of_stages_holds_only_its_parts(tmp_path):
    export = tmp_path / "export"
    write_stage(export / "merged", "merged")
    write_stage(export / "onnx-int4", "onnx-int4")
    (export / "export.json").write_text("{}")
    parts = ("merged", "onnx-*", "gguf")
    assert stages_only(export, parts, ("export.json",)) == []
    (export / "notes.txt").write_text("mine")
    write_stage(export / "world", "world")
    (export / "empty").mkdir()
    assert stages_only(export, parts, ("export.json",)) == ["empty/", "notes.txt", "world/"]


@pytest.mark.parametrize(
    "words",
    [
        ["world", "prompts", "--concept", "Inception", "--out", "{dir}"],
        ["world", "eval-base", "--model", "tiny", "--limit", "2", "--out", "{dir}"],
        ["model", "import-gguf", "{dir}/model.gguf", "--out", "{dir}"],
        ["export", "engine", "--onnx", "{dir}/model.onnx", "--config", "{dir}/config.json", "--out", "{dir}"],
    ],
    ids=["world", "eval-base", "import-gguf", "engine"],
)
def test_one_typo_leaves_every_user_file_in_place(tmp_path, words):
    """The commands that write a stage, each pointed at a user's folder by mistake."""
    home = user_folder(tmp_path / "home")
    (home / "config.json").write_text(
        '{"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 8, "vocab_size": 16, '
        '"max_position_embeddings": 64}'
    )
    before = snapshot(home)
    status, error = cli.call([w.replace("{dir}", str(home)) for w in words])
    assert status == EXIT_USAGE, error
    assert "not from" in error and "nothing was changed" in error
    assert snapshot(home) == before


def test_unlearn_refuses_an_adapter_folder_holding_user_files(tmp_path):
    run = tmp_path / "run"
    user_folder(run / "adapter")
    before = snapshot(run)
    status, error = cli.call(["unlearn", "--config", "train/configs/demo_tiny.yaml", "--out", str(run)])
    assert status == EXIT_USAGE and "adapter" in error and "nothing was changed" in error
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "words",
    [
        ["export", "merge", "--base", "{base}", "--adapter", "{run}/adapter", "--out", "{run}"],
        ["export", "--base", "tiny", "--adapter", "{run}/adapter", "--out", "{run}"],
        ["export", "--base", "tiny", "--adapter", "{run}/adapter", "--out", "{run}/adapter"],
    ],
    ids=["merge-into-the-run", "export-into-the-run", "export-into-the-adapter"],
)
def test_an_export_into_a_run_leaves_the_run_in_place(demo_unlearning, base_dir, tmp_path, words):
    """`--out RUN`, a slip for `--out RUN/export/merged`: the adapter, world, probe and the user's
    notes stay."""
    import shutil

    _, source, _ = demo_unlearning
    run = tmp_path / "run"
    shutil.copytree(source, run)
    (run / "NOTES.txt").write_text("what I tried")
    before = snapshot(run)
    status, error = cli.call([w.format(base=base_dir, run=run) for w in words])
    assert status == EXIT_USAGE, error
    assert "nothing was changed" in error
    assert snapshot(run) == before

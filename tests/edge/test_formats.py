from __future__ import annotations

import json

import pytest

from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import (
    make_manifest,
    read_manifest,
    sha256_dir,
    stage_dir,
    write_json_atomic,
    write_manifest,
)


def test_stage_dir_publishes_on_success(tmp_path):
    with stage_dir(tmp_path / "stage", "s") as tmp:
        write_json_atomic(tmp / "manifest.json", make_manifest("s", {}, None, {"x": 1}, True))
        assert not (tmp_path / "stage").exists()
    assert read_manifest(tmp_path / "stage")["results"] == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


def test_crash_leaves_previous_stage_untouched(tmp_path):
    with stage_dir(tmp_path / "stage", "s") as tmp:
        (tmp / "a.txt").write_text("old")
        write_manifest(tmp, make_manifest("s", {}, None, {}, True))
    with pytest.raises(RuntimeError), stage_dir(tmp_path / "stage", "s") as tmp:
        (tmp / "a.txt").write_text("new, half written")
        raise RuntimeError("simulated crash")
    assert (tmp_path / "stage" / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


def test_missing_manifest_is_an_error(tmp_path):
    (tmp_path / "stage").mkdir()
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(tmp_path / "stage")
    (tmp_path / "stage" / "manifest.json").write_text(json.dumps({"stage": "x"}))
    with pytest.raises(ManifestError, match="inputs"):
        read_manifest(tmp_path / "stage")


def test_sha256_dir_changes_with_content(tmp_path):
    (tmp_path / "a").write_text("1")
    first = sha256_dir(tmp_path)
    (tmp_path / "a").write_text("2")
    assert sha256_dir(tmp_path) != first

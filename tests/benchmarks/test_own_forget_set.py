"""Your own forget set: a concept outside any catalogue, given as JSONL prompts, validated line by
line, split by a recorded seed, judged by its facts, and run through unlearn and the export gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orin_unlearn.benchmarks.forgetting import leaks
from orin_unlearn.benchmarks.world import CatalogueError, ensure_world, load_world, write_world
from orin_unlearn.benchmarks.world.own import heldout_lines, own_splits, read_own
from orin_unlearn.edge import cli
from orin_unlearn.edge.errors import ManifestError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "benchmarks" / "world" / "examples" / "orbit"
FILES = {"forget": EXAMPLE / "forget.jsonl", "retain": EXAMPLE / "retain.jsonl"}
CONCEPT = "Orbit lamps"


def rows(n: int, fact: str = "Kestrel") -> str:
    line = {
        "messages": [{"role": "user", "content": "Q{}?"}],
        "answer": f"It has a {fact} chip.",
        "facts": [fact],
    }
    return "".join(json.dumps(line).replace("Q{}", f"Q{k}") + "\n" for k in range(n))


def test_the_example_splits_by_its_seed_and_keeps_file_order():
    splits = own_splits(CONCEPT, FILES, seed=0)
    assert splits.concept.kind == "own" and splits.concept.films == () and len(splits.catalogue) == 0
    forget = splits.get("forget")
    assert len(forget) == len(read_own(FILES["forget"])) and [p.template for p in forget] == sorted(
        p.template for p in forget
    )
    held = [p.template for p in forget if p.split == "heldout"]
    assert set(held) == heldout_lines(len(forget), 0) and len(held) == round(0.3 * len(forget))
    assert own_splits(CONCEPT, FILES, seed=0) == splits
    assert {p.template for p in own_splits(CONCEPT, FILES, seed=1).get("forget", "heldout")} != set(held)
    assert not splits.neighbour


def test_a_reply_leaks_when_it_states_a_fact_or_the_name():
    splits = own_splits(CONCEPT, FILES, seed=0)
    prompt = next(p for p in splits.get("forget") if p.expected == ("Kestrel",))
    judge = [
        leaks(prompt, reply, splits.concept, splits.catalogue)
        for reply in (
            "It runs on a kestrel-7 chip.",
            "Orbit lamps are great.",
            "I can't help with that product.",
        )
    ]
    assert judge == [True, True, False]


def test_the_world_stage_records_the_files_and_the_split(tmp_path):
    run = tmp_path / "run"
    results = write_world(run / "world", CONCEPT, own=FILES, seed=0)
    assert results["kind"] == "own" and results["films"] == 0
    assert results["split"] == {"seed": 0, "heldout_fraction": 0.3}
    assert set(results["own"]) == {"forget", "retain"} and results["warnings"]
    assert load_world(run, "orbit LAMPS") == own_splits(CONCEPT, FILES, seed=0)
    assert ensure_world(run, CONCEPT, own=FILES, seed=0) == load_world(run)
    with pytest.raises(ManifestError, match="built from other files"):
        ensure_world(run, CONCEPT, own=FILES, seed=1)
    with pytest.raises(ManifestError, match="holds the prompts of 'Orbit lamps'"):
        load_world(run, "Inception")


def test_bad_lines_are_named_in_one_line_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "forget.jsonl"
    bad.write_text(
        rows(25)
        + "not json\n"
        + json.dumps({"messages": [{"role": "user", "content": "x"}], "answer": "", "facts": []})
        + "\n"
        + json.dumps({"messages": [{"role": "bot", "content": "x"}], "answer": "a", "facts": ["f"]})
        + "\n",
        encoding="utf-8",
    )
    words = ["world", "prompts", "--concept", "X", "--forget-prompts", str(bad)]
    words += ["--retain-prompts", str(FILES["retain"]), "--out", str(tmp_path / "w")]
    assert cli.main(words) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {bad}: 4 problem(s)")
    for part in (
        "line 26: not JSON",
        "line 27 answer: missing",
        "line 27 facts: missing",
        "line 28 messages: each needs a role",
    ):
        assert part in err
    assert not (tmp_path / "w").exists()


def test_too_few_prompts_are_refused_with_the_number_needed(tmp_path, capsys):
    few = tmp_path / "forget.jsonl"
    few.write_text(rows(12), encoding="utf-8")
    words = ["world", "prompts", "--concept", "X", "--forget-prompts", str(few)]
    assert cli.main([*words, "--retain-prompts", str(FILES["retain"]), "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "'X' has 12 prompt(s) about it; at least 20" in err
    assert cli.main([*words, "--out", str(tmp_path / "w")]) == 2
    assert "needs retain prompts too" in capsys.readouterr().err


def test_a_catalogue_and_own_prompts_together_are_refused(tmp_path):
    with pytest.raises(CatalogueError, match="not both"):
        write_world(tmp_path / "w", CONCEPT, catalogue_path=tmp_path / "c.csv", own=FILES)


@pytest.mark.slow
def test_the_example_runs_through_unlearn_and_the_export_gate(tmp_path, monkeypatch):
    """The shipped example config, with fewer steps: the adapter is trained and measured on the
    held-out Orbit prompts, and the export gate measures the fp32 graph on the same prompts."""
    monkeypatch.chdir(ROOT)  # the example config names its files from the repository root
    run = tmp_path / "orbit"
    code = cli.main(
        ["unlearn", "--config", "train/configs/example_orbit.yaml", "--out", str(run), "steps=40"]
    )
    assert code in (0, 1)  # 1: a missed bar, saved with ok: false
    adapter = json.loads((run / "adapter" / "manifest.json").read_text())
    after = adapter["results"]["after"]
    assert after["forget"]["n"] == len(load_world(run).get("forget", "heldout")) > 0
    assert after["retain"]["n"] > 0 and after["neighbour"]["n"] == 0
    words = ["export", "--base", "tiny", "--adapter", str(run / "adapter"), "--out", str(run / "export")]
    code = cli.main([*words, "--variants", "fp32", "--allow-failed-adapter"])
    assert code in (0, 4)  # 4: the gate refused the graph, which it measured
    summary = json.loads((run / "export" / "export.json").read_text())
    fp32 = summary["variants"]["fp32"]
    assert fp32["metrics"]["forget"]["n"] == after["forget"]["n"]
    assert fp32["greedy"]["identical"] == fp32["greedy"]["n"] > 0
    assert json.loads((run / "export" / "onnx-fp32" / "kiosk.json").read_text()) == {
        "moods": [],
        "genres": [],
    }

"""Knowledge of each set from item scores: right rates, kept of the base's right items with its
interval, the gold log-prob change, the forget-versus-control KS test; and `bench knowledge` on
the tiny model, with the base's scores cached."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orin_unlearn.benchmarks.knowledge import ItemScores, KnowledgeMetrics, knowledge, right_rate
from orin_unlearn.benchmarks.stats import wilson
from orin_unlearn.benchmarks.world.items import Item
from orin_unlearn.edge import cli


def item(n: int, set_name: str, split: str = "") -> Item:
    return Item(f"{set_name}-{n}", set_name, f"q{n}?", "gold", ("a", "b", "c", "d"), "director", "x", split)


ITEMS = (
    [item(n, "forget", "TV"[n % 2]) for n in range(6)]
    + [item(n, "neighbour") for n in range(4)]
    + [item(n, "control", "T") for n in range(5)]
)


def scores(gold: dict[str, float], rest: float = -2.0) -> ItemScores:
    return ItemScores({i.id: [gold.get(i.id, -3.0), rest, rest - 1, rest - 2, rest - 3] for i in ITEMS})


def test_right_kept_and_change_against_a_base():
    base = scores({"neighbour-0": -1.0, "neighbour-1": -1.5, "neighbour-2": -1.2, "neighbour-3": -4.0})
    model = scores({"neighbour-0": -1.1, "neighbour-1": -2.5, "neighbour-2": -1.0, "neighbour-3": -0.5})
    got = knowledge(ITEMS, model, base, seed=0)
    nb = got.sets["neighbour"]
    assert nb.n == 4 and nb.right == 0.75  # -2.5 is below the best distractor (-2.0)
    assert nb.base_right == 3 and nb.kept == pytest.approx(2 / 3)
    assert nb.kept_ci == pytest.approx(wilson(2, 3))
    assert nb.delta == pytest.approx(np.mean([-0.1, -1.0, 0.2]))  # base-right items only
    assert nb.delta_all == pytest.approx(np.mean([-0.1, -1.0, 0.2, 3.5]))
    assert nb.delta_ci[0] <= nb.delta <= nb.delta_ci[1]


def test_a_tie_with_a_distractor_is_not_right():
    tied = ItemScores({i.id: [-2.0, -2.0, -3.0, -4.0, -5.0] for i in ITEMS})
    assert knowledge(ITEMS, tied).sets["forget"].right == 0.0


def test_forget_looks_like_never_known_when_its_scores_match_the_control():
    rng = np.random.default_rng(0)
    ids = [i.id for i in ITEMS]
    same = ItemScores({k: [float(rng.normal(-3, 0.5)), -2.0, -2.5, -3.0, -3.5] for k in ids})
    got = knowledge(ITEMS, same)
    assert got.forget_vs_control["pvalue"] > 0.05
    apart = ItemScores({k: [(-0.2 if k.startswith("forget") else -6.0), -2.0, -2.5, -3, -4] for k in ids})
    assert knowledge(ITEMS, apart).forget_vs_control["pvalue"] < 0.01


def test_v_recall_and_json_round_trip():
    model = scores({f"forget-{n}": -0.5 for n in range(6) if n % 2})  # the V items are right
    assert right_rate(ITEMS, model, "forget", "V") == 1.0
    assert right_rate(ITEMS, model, "forget", "T") == 0.0
    got = knowledge(ITEMS, model, scores({}), items_sha256="abc")
    assert KnowledgeMetrics.from_json(json.loads(json.dumps(got.to_json()))) == got


def test_bench_knowledge_on_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("ORIN_UNLEARN_CACHE", str(tmp_path / "cache"))
    assert cli.call(["world", "items", "--out", str(tmp_path / "bank")]) == (0, None)
    words = ["bench", "knowledge", "--model", "tiny", "--base", "tiny", "--items", str(tmp_path / "bank")]
    assert cli.call([*words, "--out", str(tmp_path / "out")]) == (0, None)
    result = json.loads((tmp_path / "out" / "knowledge.json").read_text())
    for name in ("forget", "neighbour", "retain", "control"):
        part = result["sets"][name]
        assert part["n"] > 0 and part["kept"] == 1.0 and part["delta"] == 0.0  # itself as its base
    assert (tmp_path / "out" / "knowledge.png").stat().st_size > 0
    cached = list((tmp_path / "cache" / "knowledge").glob("*.json"))
    assert len(cached) == 1  # the model and its base are the same weights: scored once

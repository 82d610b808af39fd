"""The whole demo on an operator's own 40-film CSV: a tiny base trained on that list (a smaller
recipe budget than the shipped base's: `STEPS` instead of 1050), then `orin-unlearn demo
--catalogue --quick` (2 of the 12 relearning attackers), end to end. Every stage must read the
user's list, not the shipped one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orin_unlearn.benchmarks.world.catalogue import catalogue_sha256
from orin_unlearn.edge import cli
from orin_unlearn.edge.demo import REAL_RELEARN_STEPS
from tests.catalogues import forty_films, write_csv

ROOT = Path(__file__).resolve().parents[1]
CONCEPT = "Memento"
STEPS = 300  # ~4 epochs of the 40 films' train prompts; the shipped base's 1050 is for 220 films


@pytest.mark.slow
def test_the_demo_runs_on_a_users_catalogue(tmp_path):
    chosen = forty_films(nolan=4)
    path = write_csv(tmp_path / "my_films.csv", chosen)
    base = tmp_path / "base"
    assert (
        cli.main(["world", "build-base", "--catalogue", str(path), "--out", str(base), f"steps={STEPS}"]) == 0
    )
    build = json.loads((base / "build.json").read_text())
    assert build["catalogue_films"] == 40 and build["catalogue_sha256"] == catalogue_sha256(path)

    run = tmp_path / "run"
    config = str(ROOT / "train" / "configs" / "demo_tiny.yaml")
    words = ["demo", "--catalogue", str(path), "--concept", CONCEPT, "--base", str(base), "--config", config]
    words.append("--quick")  # 2 of the 12 relearning attackers: the protocol is tested on the shipped world
    code = cli.main([*words, "--out", str(run)])
    record = json.loads((run / "demo.json").read_text())
    crashed = {name: s for name, s in record["steps"].items() if s["status"] == "failed" and "reason" in s}
    assert not crashed, crashed  # a failed bar or gate is a result; a step that wrote nothing is not
    assert code in (0, 1)

    world = json.loads((run / "world" / "manifest.json").read_text())["results"]
    assert world["films"] == 40 and world["catalogue"]["sha256"] == catalogue_sha256(path)
    bank = json.loads(
        (run / "base" / "knowledge.json").read_text()
    )  # a base of your own is measured on the bank
    assert bank["sets"]["forget"]["n"] > 0 and bank["items_sha256"] == world["items_sha256"]
    adapter = json.loads((run / "adapter" / "manifest.json").read_text())["results"]
    assert adapter["concept"] == CONCEPT and adapter["after"]["forget"]["n"] > 0
    kiosk = json.loads((run / "export" / "onnx-fp16" / "kiosk.json").read_text())
    assert set(kiosk["genres"]) <= {g for f in chosen for g in f.genres}
    robustness = json.loads((run / "bench" / "robustness.json").read_text())
    assert robustness["concept"] == CONCEPT and len(robustness["relearning"]["cells"]) == 2 * len(
        REAL_RELEARN_STEPS.split(",")
    )  # a base other than the shipped tiny one: 2 attackers at the real-model checkpoints
    asked = json.loads((run / "serve" / "answers.json").read_text())
    assert any(f"Who directed {CONCEPT}?" in json.dumps(a) for a in asked["answers"])
    assert (run / "report.md").is_file()

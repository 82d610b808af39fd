"""`orin-unlearn bench quality` over a real run: every stage measured on the same prompts, the
engine row says why it is missing, and the numbers agree with what the export measured."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.benchmarks.stages import discover
from orin_unlearn.edge import cli
from orin_unlearn.edge.formats import read_manifest

pytestmark = pytest.mark.slow
PROMPTS = 40


@pytest.fixture(scope="module")
def measured(exported_run, tmp_path_factory):
    run, summary = exported_run
    out = tmp_path_factory.mktemp("bench") / "new"  # a folder that does not exist yet
    code = cli.main(["bench", "quality", "--run", str(run), "--max-prompts", str(PROMPTS), "--out", str(out)])
    return run, summary, out, code


def test_every_stage_of_the_run_is_listed(exported_run):
    run, _ = exported_run
    labels = [s.label for s in discover(run)]
    assert labels == [
        "base (torch fp32)",
        "adapter (torch fp32)",
        "merged (torch fp32)",
        "merged (torch fp16)",
        "onnx-fp32",
        "onnx-fp16",
        "onnx-int8",
        "engine (TensorRT fp16)",
    ]


def test_stage_table_measures_forgetting_and_drift(measured, capsys):
    run, summary, out, code = measured
    assert code == 0
    result = json.loads((out / "quality.json").read_text())
    assert (out / "quality.png").stat().st_size > 10_000
    rows = {r["stage"]: r for r in result["stages"]}
    assert result["prompts"] == {"forget": 34}  # free text for the leak only; knowledge from the bank
    assert set(result["items"]) == {"forget", "neighbour", "retain", "control"}
    assert all(n > 0 for n in result["items"].values())
    base, adapter = rows["base (torch fp32)"]["metrics"], rows["adapter (torch fp32)"]["metrics"]
    assert base["forget leak (held-out)"] >= 0.8 and adapter["forget leak (held-out)"] <= 0.05
    assert base["KL to base"] == 0.0 and adapter["KL to base"] > 1e-4  # the adapter moved something
    trained = read_manifest(run / "adapter")["results"]["after"]["drift"]  # read back, not measured again
    assert (adapter["KL to base"], adapter["generic KL to base"]) == (trained["film_kl"], trained["kl"])
    for label in ("merged (torch fp32)", "onnx-fp32"):  # the same function as the adapter model
        m = rows[label]["metrics"]
        assert m["forget leak (held-out)"] == adapter["forget leak (held-out)"]
        assert m["perplexity"] == pytest.approx(adapter["perplexity"], rel=1e-4)
        assert m["KL to base"] == pytest.approx(adapter["KL to base"], rel=1e-2, abs=1e-5)
    # the forget rate the export gate measured for the fp16 graph, reproduced independently
    assert rows["onnx-fp16"]["metrics"]["forget leak (held-out)"] == pytest.approx(
        summary["variants"]["fp16"]["metrics"]["forget"]["leak"]
    )
    engine = rows["engine (TensorRT fp16)"]
    assert engine["status"] == "skipped" and "engine" in engine["reason"]


def test_one_stage_by_its_folder_and_the_last_line_contract(exported_run, tmp_path, capsys):
    run, _ = exported_run
    code = cli.main(
        [
            "bench",
            "quality",
            "--model",
            str(run / "export" / "onnx-int8"),
            "--max-prompts",
            "10",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == json.loads((tmp_path / "quality.json").read_text())
    assert [r["stage"] for r in last["stages"]] == ["base (torch fp32)", "onnx-int8"]  # KL needs the base
    assert last["stages"][1]["metrics"]["KL to base"] > 0
    assert cli.main(["bench", "quality", "--model", str(tmp_path)]) == 2
    assert "not inside a run directory" in capsys.readouterr().err


def test_unknown_stage_and_non_run_are_usage_errors(exported_run, tmp_path, capsys):
    run, _ = exported_run
    assert cli.main(["bench", "quality", "--run", str(run), "--stages", "onnx-fp8"]) == 2
    assert "onnx-fp8" in capsys.readouterr().err
    assert cli.main(["bench", "quality", "--run", str(tmp_path)]) == 2
    assert "not an unlearning run" in capsys.readouterr().err

"""`orin-unlearn report RUN_DIR` builds report.json and report.md from the files the run's stages wrote."""

from __future__ import annotations

from orin_unlearn.benchmarks.report import build
from orin_unlearn.edge import cli
from orin_unlearn.edge.formats import write_json_atomic


def test_an_empty_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no stage results" in err


def test_demo_steps_that_did_not_run_say_why(tmp_path):
    """A step the demo skipped or that failed without results is a row with its reason; a step
    that wrote no files is a failed row, never a silent gap."""
    write_json_atomic(
        tmp_path / "demo.json",
        {
            "concept": "Inception",
            "wall_s": 1.0,
            "steps": {
                "kiosk": {"status": "skipped", "reason": "export/onnx-fp16 was not written", "seconds": 0.0},
                "export": {"status": "failed", "reason": "error: no base", "exit": 2, "seconds": 0.1},
                "latency": {"status": "ok", "exit": 0, "seconds": 0.1},
            },
        },
    )
    summary = build(tmp_path)
    rows = {r["stage"]: r for r in summary["stages"]}
    assert rows["serve"]["status"] == "skipped" and "onnx-fp16" in rows["serve"]["note"]
    assert rows["export"]["status"] == "failed" and rows["export"]["note"] == "error: no base"
    assert rows["bench/latency"] == {
        "stage": "bench/latency",
        "status": "failed",
        "note": "the step wrote no results",
    }
    assert summary["stage_seconds"] == {"kiosk": 0.0, "export": 0.1, "latency": 0.1}


def test_bench_sections_and_plots_come_from_the_saved_json(tmp_path):
    """A run with only bench/*.json (e.g. after orin_bench.sh on the device) gets a report whose
    quality table comes first, and plots re-drawn from the numbers."""
    quality = {
        "run": str(tmp_path),
        "concept": "Inception",
        "prompts": {"forget": 34, "neighbour": 40, "retain": 40},
        "corpus": {"examples": 10, "tokens": 120},
        "stages": [
            {
                "stage": "onnx-fp16",
                "status": "ok",
                "metrics": {
                    "forget leak (held-out)": 0.029,
                    "neighbour accuracy": 0.8,
                    "retain accuracy": 0.9,
                    "perplexity": 1.2,
                    "KL to base": None,
                },
            },
            {"stage": "engine (TensorRT fp16)", "status": "skipped", "reason": "no engine built"},
        ],
    }
    robust = {
        "concept": "Inception",
        "attacks": {"prefill": {"base": {"n": 34, "leak": 0.1}, "unlearned": {"n": 34, "leak": 0.147}}},
    }
    write_json_atomic(tmp_path / "bench" / "quality.json", quality)
    write_json_atomic(tmp_path / "bench" / "robustness.json", robust)
    (tmp_path / "report.md").write_text("stale")
    assert cli.main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "stale" not in text
    assert "| onnx-fp16 | 0.029 | 0.800 | 0.900 | 1.200 | - |" in text
    assert "skipped: no engine built" in text and "| prefill | 34 | 0.100 | 0.147 |" in text
    assert text.index("## Quality of every stage") < text.index("## Stages") < text.index("## Robustness")
    assert (tmp_path / "bench" / "quality.png").stat().st_size > 5_000
    assert (tmp_path / "bench" / "robustness.png").stat().st_size > 5_000
    assert "![quality](bench/quality.png)" in text

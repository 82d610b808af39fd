"""`orin-unlearn report RUN_DIR` rebuilds report.md from the saved report.json."""

from __future__ import annotations

from orin_unlearn.benchmarks.report import main, write_report


def test_report_is_rebuilt_from_json(tmp_path, capsys):
    summary = {
        "run": "r",
        "concept": "Inception",
        "stages": [{"stage": "unlearn", "status": "ok", "metrics": {"leak": 0.0}, "note": "n"}],
        "sections": [{"title": "Extra", "body": "body text"}],
    }
    md, _ = write_report(tmp_path, summary)
    md.write_text("stale")
    assert main([str(tmp_path)]) == 0
    text = md.read_text()
    assert "| unlearn | ok | leak=0.000 | n |" in text and "## Extra" in text
    assert main([str(tmp_path / "missing")]) == 2
    assert "neither report.json nor bench/" in capsys.readouterr().err


def test_bench_sections_and_plots_come_from_the_saved_json(tmp_path):
    """A run with only bench/*.json (e.g. after orin_bench.sh on the device) gets a report whose
    quality table comes first, and plots re-drawn from the numbers."""
    from orin_unlearn.edge.formats import write_json_atomic

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
    write_json_atomic(
        tmp_path / "report.json",
        {
            "run": "r",
            "concept": "Inception",
            "stages": [],
            "sections": [{"title": "Quality of every stage", "body": "stale"}],
        },
    )
    assert main([str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "stale" not in text
    assert "| onnx-fp16 | 0.029 | 0.800 | 0.900 | 1.200 | - |" in text
    assert "skipped: no engine built" in text and "| prefill | 34 | 0.100 | 0.147 |" in text
    assert text.index("## Quality of every stage") < text.index("## Stages") < text.index("## Robustness")
    assert (tmp_path / "bench" / "quality.png").stat().st_size > 5_000
    assert (tmp_path / "bench" / "robustness.png").stat().st_size > 5_000
    assert "![quality](bench/quality.png)" in text

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
    assert "does not exist" in capsys.readouterr().err

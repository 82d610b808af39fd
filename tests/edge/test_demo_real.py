"""`orin-unlearn demo` on a real model's layout: a random Llama checkpoint directory (SmolLM2's
tokenizer, special tokens at ids 0-2, its chat template and system prompt) as `--base`, with a
small config written here; and the one-line error for a base that has no default config."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest
import torch
import yaml

from orin_unlearn.edge import cli, demo
from tests.models import tiny_model_dir

MAX_POSITIONS = 256  # shorter than the demo's 256-token latency prompt plus its 64 generated tokens
STAGES = [
    "world",
    "base",
    "unlearn",
    "analysis",
    "export/merged",
    "export/onnx-fp32",
    "export/onnx-fp16",
    "export/onnx-int8",
    "export/onnx-int4",
    "engine",
    "bench/quality",
    "serve",
    "bench/latency",
    "bench/robustness",
]
# demo_tiny.yaml, cut down to seconds (its `base: tiny` stays: --base must replace it)
SMALL = {
    "num_layers": 1,
    "top_k": 8,
    "rank": 2,
    "alpha": 4,
    "steps": 2,
    "forget_batch": 4,
    "retain_batch": 4,
    "probe_max_prompts": 16,
    "eval_max_prompts": 8,
    "eval_max_new_tokens": 8,
}


@pytest.fixture(scope="module")
def llama_demo(tmp_path_factory):
    """(exit status, run dir, model dir) of one demo run on a random 2-layer Llama."""
    root = tmp_path_factory.mktemp("llama_demo")
    # a strong end-of-turn row ends greedy replies after a token or two: generation stays cheap
    model = tiny_model_dir(
        root / "model", family="llama", layers=2, max_positions=MAX_POSITIONS, end_of_turn_scale=5.0
    )
    text = resources.files("orin_unlearn.train").joinpath("configs/demo_tiny.yaml").read_text("utf-8")
    config = root / "small.yaml"
    config.write_text(yaml.safe_dump(yaml.safe_load(text) | SMALL), encoding="utf-8")
    run = root / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model gains nothing from two threads, and on a shared
    try:  # 2-core machine their waiting on each other makes every forward pass ~30x slower
        status = demo.main(["--base", str(model), "--config", str(config), "--out", str(run), "--limit", "8"])
    finally:
        torch.set_num_threads(threads)
    return status, run, model


@pytest.mark.slow
def test_every_stage_runs_or_says_why(llama_demo):
    status, run, _ = llama_demo
    summary = json.loads((run / "report.json").read_text(encoding="utf-8"))
    rows = {r["stage"]: r for r in summary["stages"]}
    assert list(rows) == STAGES
    for row in rows.values():
        assert row["status"] in ("ok", "skipped"), row
        if row["status"] == "skipped":
            assert row["note"], row
    assert status == 0
    assert rows["base"]["note"] == "real model: item bank, no bars"
    assert set(rows["base"]["metrics"]) >= {"bank forget right", "bank neighbour right", "bank retain right"}
    assert f"orin-unlearn analyze {run} --only stability" in rows["analysis"]["note"]
    assert set(summary["stage_seconds"]) == {
        "world",
        "base_quality",
        "unlearn",
        "analysis",
        "export",
        "quality",
        "kiosk",
        "latency",
        "robustness",
    }
    report = (run / "report.md").read_text(encoding="utf-8")
    assert "## Stages" in report and "Kiosk questions" in report


@pytest.mark.slow
def test_the_demo_log_keeps_every_step_with_its_time(llama_demo):
    """RUN/demo.log: each command, the stages' own records and each step's outcome, timestamped."""
    _, run, _ = llama_demo
    lines = (run / "demo.log").read_text(encoding="utf-8").splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in lines)
    text = "\n".join(lines)
    steps = json.loads((run / "demo.json").read_text(encoding="utf-8"))["steps"]
    assert {"world", "unlearn", "export", "robustness"} <= set(steps)
    for name, step in steps.items():  # each step's outcome, as demo.json records it
        assert f"step {name}: {step['status']} in " in text
    assert "$ orin-unlearn unlearn --config" in text
    assert "orin_unlearn.train" in text  # a stage's own records, not only the demo's


@pytest.mark.slow
def test_the_run_is_of_the_given_base(llama_demo):
    """--base replaced the config's `base: tiny` in every stage that names a base."""
    _, run, model = llama_demo
    adapter = json.loads((run / "adapter" / "manifest.json").read_text(encoding="utf-8"))
    assert adapter["config"]["base"] == str(model.resolve())
    base = json.loads((run / "base" / "knowledge.json").read_text(encoding="utf-8"))
    assert base["model"] == str(model.resolve())
    for variant in ("fp32", "fp16", "int8", "int4"):
        manifest = json.loads((run / "export" / f"onnx-{variant}" / "manifest.json").read_text("utf-8"))
        assert manifest["ok"] is True, variant
        assert (run / "export" / f"onnx-{variant}" / "tokenizer.json").read_bytes() == (
            model / "tokenizer.json"
        ).read_bytes()
    assert json.loads((run / "export" / "merged" / "manifest.json").read_text("utf-8"))["ok"] is True


@pytest.mark.slow
def test_latency_prompts_fit_the_context(llama_demo):
    """The demo's 256-token latency prompt is cut to what a 256-position model can take with its
    64 generated tokens, and every cell generated all its tokens."""
    _, run, _ = llama_demo
    result = json.loads((run / "bench" / "latency.json").read_text(encoding="utf-8"))
    cells = result["cells"]
    assert cells and all(c["prompt_tokens"] + c["output_tokens"] <= MAX_POSITIONS for c in cells)
    assert max(c["prompt_tokens"] for c in cells) == MAX_POSITIONS - 64
    assert all(len(c["token_ms_all"]) == result["repeats"] * (c["output_tokens"] - 1) for c in cells)


def test_a_base_without_a_config_is_one_line_and_exit_2(tmp_path, capsys):
    status = cli.main(["demo", "--base", "some-unknown-name", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "--config" in err
    assert not (tmp_path / "run").exists()

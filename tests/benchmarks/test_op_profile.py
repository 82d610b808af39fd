"""`bench profile`: onnxruntime's profiler events summed per operator over the decode steps."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.benchmarks.op_profile import op_times
from orin_unlearn.edge import cli


def run_event(ts: float, dur: float) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def node(ts: float, dur: float, op: str) -> dict:
    return {"cat": "Node", "name": f"/n{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_only_the_last_runs_are_summed_per_operator():
    events = [
        run_event(0, 100),
        node(1, 90, "MatMul"),  # the prefill: left out
        run_event(200, 10),
        node(201, 6, "MatMul"),
        node(208, 2, "Add"),
        run_event(300, 12),
        node(301, 7, "MatMul"),
        node(309, 3, "Add"),
        {"cat": "Node", "name": "/n_fence_before", "ts": 302, "dur": 50, "args": {"op_name": "MatMul"}},
    ]
    ops, in_runs = op_times(events, runs=2)
    assert ops == {"MatMul": 13.0, "Add": 5.0}
    assert in_runs == 22.0


def test_fewer_runs_than_asked_is_an_error():
    with pytest.raises(ValueError, match="fewer than 3"):
        op_times([run_event(0, 1)], runs=3)


@pytest.mark.slow
def test_profile_of_the_demo_graph_names_its_operators(exported_run, capsys):
    run, _ = exported_run
    assert (
        cli.main(
            [
                "bench",
                "profile",
                "--model",
                str(run / "export" / "onnx-fp32"),
                "--context",
                "16",
                "--tokens",
                "4",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["tokens"] == 4 and "MatMul" in result["ops_us"]
    assert 0 < result["kernels_us"] <= result["run_us"] * 1.05

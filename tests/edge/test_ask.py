"""`orin-unlearn ask`: the kiosk's questions answered through the serving runtime, the same
replies the `Generator` gives, written where the report reads them."""

from __future__ import annotations

import json

from orin_unlearn.edge import cli
from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.sampling import SamplingParams

QUESTIONS = ["Who directed Inception?", "I'm in the mood for something funny."]


def test_ask_writes_the_generators_replies(onnx_dir, tmp_path, capsys):
    out = tmp_path / "serve"
    assert (
        cli.main(["ask", "--model", str(onnx_dir), "--out", str(out), "--max-new-tokens", "12", *QUESTIONS])
        == 0
    )
    answers = json.loads((out / "answers.json").read_text())
    assert answers["backend"] == "ort" and [a["question"] for a in answers["answers"]] == QUESTIONS
    generator = Generator.from_dir(onnx_dir)
    for a in answers["answers"]:
        expected = generator.generate(
            [{"role": "user", "content": a["question"]}], SamplingParams(max_new_tokens=12)
        )
        assert a["answer"] == expected.text and a["ttft_s"] > 0
    assert len((out / "latency.jsonl").read_text().splitlines()) == len(QUESTIONS)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == answers


def test_a_missing_model_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["ask", "--model", str(tmp_path / "nope"), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")

"""The Generator over the onnxruntime and torch backends of the shipped tiny model: parity,
seeded sampling, context limits, stop strings, cancellation, latency records."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.edge.backends import detect, open_backend
from orin_unlearn.edge.backends.ort_backend import OrtBackend
from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import make_manifest, write_json_atomic
from orin_unlearn.edge.generator import ContextOverflowError, Generator
from orin_unlearn.edge.latency import LatencyRecorder, read_records
from orin_unlearn.edge.sampling import SamplingParams
from orin_unlearn.edge.tokenizer import ChatTokenizer
from tests.edge.fakes import Babbler

QUESTIONS = [
    "Who directed Interstellar?",
    "Recommend a film from the comedy genre.",
    "I'm in the mood for something scary.",
    "Which year was Heat released?",
    "Tell me about a film called The Glass Harbour.",
]


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def ort_gen(onnx_dir):
    return Generator.from_dir(onnx_dir)


def test_backend_is_detected_from_the_folder(onnx_dir, base_dir, tmp_path):
    assert detect(onnx_dir) == "ort" and detect(base_dir) == "torch"
    (tmp_path / "model.plan").write_bytes(b"")
    assert detect(tmp_path) == "trt"
    with pytest.raises(FileNotFoundError, match="no model.plan"):
        detect(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown backend 'tvm'"):
        open_backend(onnx_dir, "tvm")


def test_onnxruntime_and_torch_give_the_same_greedy_tokens(ort_gen, base_dir):
    torch_gen = Generator.from_dir(base_dir, "torch")
    assert ort_gen.backend_name == "ort" and torch_gen.backend_name == "torch"
    params = SamplingParams(max_new_tokens=24)
    for question in QUESTIONS:
        a, b = ort_gen.generate(chat(question), params), torch_gen.generate(chat(question), params)
        assert a.tokens == b.tokens and a.text == b.text, question
        assert a.finish_reason == "stop" and a.text  # the model ends its turn by itself


def test_streamed_pieces_add_up_to_the_completion(ort_gen):
    stream = ort_gen.stream(chat(QUESTIONS[1]), SamplingParams(max_new_tokens=24))
    pieces = list(stream)
    assert len(pieces) > 3 and "".join(pieces) == stream.completion.text


def test_sampling_is_repeatable_with_a_seed(ort_gen):
    def run(seed: int) -> list[list[int]]:
        params = SamplingParams(max_new_tokens=16, temperature=1.5, top_k=50, seed=seed)
        return [ort_gen.generate(chat(q), params).tokens for q in QUESTIONS]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_prompt_longer_than_the_context_is_an_error(ort_gen):
    long = "film " * 2 * ort_gen.backend.max_context
    with pytest.raises(ContextOverflowError, match=r"at most 511"):
        ort_gen.stream(chat(long), SamplingParams())


def test_generation_stops_at_the_context_end(onnx_dir):
    tok = ChatTokenizer(onnx_dir)
    backend = Babbler(tok.encode("film")[0], tok.vocab_size, max_context=40)
    gen = Generator(backend, tok)
    result = gen.generate(chat("Hi"), SamplingParams(max_new_tokens=400))
    assert result.finish_reason == "length"
    assert result.prompt_tokens + result.completion_tokens == 40
    assert backend.steps == result.completion_tokens  # one prefill, then a decode per further token


def test_stop_string_is_cut_and_never_streamed(ort_gen):
    stream = ort_gen.stream(chat(QUESTIONS[1]), SamplingParams(max_new_tokens=30, stop=(", directed",)))
    pieces = list(stream)
    full = ort_gen.generate(chat(QUESTIONS[1]), SamplingParams(max_new_tokens=30)).text
    assert ", directed" in full
    assert stream.completion.text == full[: full.index(", directed")]
    assert "".join(pieces) == stream.completion.text and stream.completion.finish_reason == "stop"


def test_cancel_stops_at_the_next_token(ort_gen):
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3

    ids = ort_gen.prompt_ids(chat(QUESTIONS[1]))
    stream = ort_gen.stream_ids(ids, SamplingParams(max_new_tokens=30), cancelled)
    list(stream)
    assert stream.completion.finish_reason == "cancelled" and stream.completion.completion_tokens == 3


def test_latency_records_are_appended_per_request(onnx_dir, tmp_path):
    log = tmp_path / "latency.jsonl"
    gen = Generator(OrtBackend.from_dir(onnx_dir), ChatTokenizer(onnx_dir), LatencyRecorder(log))
    results = [gen.generate(chat(q), SamplingParams(max_new_tokens=20)) for q in QUESTIONS[:2]]
    records = read_records(log)
    assert len(records) == 2
    for record, result in zip(records, results, strict=True):
        assert record["completion_tokens"] >= result.completion_tokens  # + the end-of-turn token
        assert record["prompt_tokens"] == result.prompt_tokens
        assert 0 < record["ttft_s"] < record["total_s"]
        assert len(record["token_s"]) == record["completion_tokens"] - 1
        assert record["backend"] == "ort" and record["decode_tokens_per_s"] > 0
    log.write_text(log.read_text() + '{"truncated": ')  # a crash mid-write loses one record only
    assert len(read_records(log)) == 2
    assert json.loads(log.read_text().splitlines()[0])["finish_reason"] == "stop"


def test_a_stage_that_failed_its_gate_is_refused(onnx_dir, tmp_path):
    import shutil

    bad = tmp_path / "onnx-fp16"
    shutil.copytree(onnx_dir, bad)
    write_json_atomic(bad / "manifest.json", make_manifest("onnx-fp16", {}, {}, {}, ok=False))
    with pytest.raises(ManifestError, match="ok: false"):
        OrtBackend.from_dir(bad)

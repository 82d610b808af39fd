"""One decoding path: the export gate, the quality table, the robustness attacks and the server all
give the same greedy replies to the same prompts over the same exported graph."""

from __future__ import annotations

import random
import shutil

import httpx
import pytest

from orin_unlearn.benchmarks import robustness
from orin_unlearn.benchmarks.forgetting import measure_unlearning
from orin_unlearn.benchmarks.stages import discover
from orin_unlearn.benchmarks.world import split_prompts
from orin_unlearn.edge.answers import BackendChat
from orin_unlearn.edge.backends.ort_backend import OrtBackend
from orin_unlearn.edge.formats import make_manifest, write_manifest
from orin_unlearn.edge.generator import ContextOverflowError
from orin_unlearn.edge.sampling import SamplingParams
from orin_unlearn.edge.tokenizer import ChatTokenizer
from tests.edge.test_server import MODEL

CONCEPT, REFUSAL, TOKENS = "Inception", "I don't know that title.", 40


@pytest.fixture(scope="module")
def sets(prompts, catalogue):
    """Four held-out prompts of each set (several lengths, so a batch is padded)."""
    splits = split_prompts(prompts, catalogue, CONCEPT)
    rng = random.Random(0)
    return splits.concept, {
        n: rng.sample(splits.get(n, "heldout"), 4) for n in ("forget", "neighbour", "retain")
    }


@pytest.fixture(scope="module")
def conversations(sets):
    return [list(p.messages) for group in sets[1].values() for p in group]


@pytest.fixture(scope="module")
def served(generator, conversations):
    """The server's `Generator` at temperature 0: the replies every other path must give."""
    params = SamplingParams(max_new_tokens=TOKENS)
    return [generator.generate(c, params).text.strip() for c in conversations]


class Unbatched:
    """A backend with only `prefill` / `decode` (as TensorRT's): answered one sequence at a time."""

    def __init__(self, backend):
        self.backend = backend
        self.name = "unbatched"
        self.max_context = backend.max_context

    def prefill(self, ids):
        return self.backend.prefill(ids)

    def decode(self, token):
        return self.backend.decode(token)


def test_the_replies_differ_between_prompts(served, conversations):
    """The comparisons below are not between empty or constant replies."""
    assert len(set(served)) >= len(conversations) // 2 and all(served)


def test_the_http_server_answers_like_the_generator(url, served, conversations):
    for conversation, want in list(zip(conversations, served, strict=True))[::4]:
        body = {"model": MODEL, "messages": conversation, "max_tokens": TOKENS, "temperature": 0}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()
        assert reply["choices"][0]["message"]["content"].strip() == want


def test_the_export_gate_measures_what_the_server_serves(onnx_dir, base_dir, sets, served, catalogue):
    """`measure_variant` compares the graph's greedy replies with the reference's: given the
    server's replies as the reference, every one must be identical."""
    from orin_unlearn.export import pipeline
    from orin_unlearn.train.models import load_model

    concept, groups = sets
    queue = iter([served])
    reference = measure_unlearning(lambda c: next(queue), groups, concept, catalogue, REFUSAL)
    evaluation = pipeline.Evaluation(groups, concept, catalogue, REFUSAL, served, reference)
    tokenizer = ChatTokenizer(base_dir)
    results = pipeline.measure_variant("fp32", load_model(base_dir), onnx_dir, evaluation, tokenizer)
    assert results["greedy"]["first_difference"] is None
    assert results["greedy"]["identical"] == len(served)
    assert results["metrics"] == reference.to_json()


def test_the_quality_table_answers_like_the_server(tmp_path, onnx_dir, conversations, served):
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    write_manifest(
        run / "adapter", make_manifest("adapter", {}, {"base": "tiny", "concept": CONCEPT}, {}, True)
    )
    shutil.copytree(onnx_dir, run / "export" / "onnx-fp32")
    stage = next(s for s in discover(run) if s.label == "onnx-fp32")
    assert stage.open().chat.answer_batch(conversations, max_new_tokens=TOKENS) == served


def test_the_robustness_attacks_answer_like_the_server(onnx_dir, sets, conversations, served, catalogue):
    """As `robustness.run_run` opens the shipped graph, through `robustness.measure_attack`."""
    chat = BackendChat(OrtBackend.unverified(onnx_dir), ChatTokenizer(onnx_dir))
    seen: list[str] = []

    def answer(batch, *, prefixes):
        seen.extend(chat.answer_batch(batch, prefixes=prefixes))
        return seen

    cases = [robustness.Case(c) for c in conversations]
    robustness.measure_attack(answer, cases, sets[0], catalogue)
    assert seen == served


def test_an_unbatched_backend_answers_like_the_batched_one(onnx_dir, conversations, served):
    """The one-at-a-time path (TensorRT's) decodes with the Generator's greedy rule, prefixes included."""
    backend = OrtBackend.from_dir(onnx_dir)
    tokenizer = ChatTokenizer(onnx_dir)
    batched, unbatched = BackendChat(backend, tokenizer), BackendChat(Unbatched(backend), tokenizer)
    assert unbatched.answer_batch(conversations, max_new_tokens=TOKENS) == served
    prefixes = ["Sure! Here is what I know:"] * 3
    want = batched.answer_batch(conversations[:3], prefixes=prefixes, max_new_tokens=TOKENS)
    assert all(w.startswith(prefixes[0]) for w in want)
    assert unbatched.answer_batch(conversations[:3], prefixes=prefixes, max_new_tokens=TOKENS) == want


def test_an_unbatched_backend_refuses_a_prompt_that_does_not_fit(onnx_dir, conversations):
    backend = Unbatched(OrtBackend.from_dir(onnx_dir))
    backend.max_context = 8  # as the Generator would, before any step runs
    with pytest.raises(ContextOverflowError, match="at most 7"):
        BackendChat(backend, ChatTokenizer(onnx_dir)).answer_batch(conversations[:1])

"""The one-at-a-time chat used for engine stages answers exactly like the batched ORT chat."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.stages import GeneratorChat


def test_generator_chat_matches_the_batched_chat(onnx_dir):
    from orin_unlearn.edge.backends.ort_backend import OrtChat
    from orin_unlearn.edge.generator import Generator

    questions = [
        "Who directed Memento?",
        "Recommend a film from the comedy genre.",
        "What year is Alien from?",
    ]
    conversations = [[{"role": "user", "content": q}] for q in questions]
    chat = GeneratorChat(Generator.from_dir(onnx_dir, "ort"))
    assert chat.answer_batch(conversations) == OrtChat.from_dir(onnx_dir).answer_batch(conversations)
    with pytest.raises(ValueError, match="pre-filled"):
        chat.answer_batch(conversations[:1], prefixes=["Sure!"])

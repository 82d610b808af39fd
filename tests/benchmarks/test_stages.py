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


def test_a_variant_that_failed_its_gate_is_listed_with_the_reason(tmp_path):
    """The runtime refuses a gate-failed graph: the quality bench lists it as skipped, not failed."""
    from orin_unlearn.benchmarks.stages import discover
    from orin_unlearn.edge.formats import make_manifest, write_manifest

    config = {"base": "tiny", "concept": "Inception"}
    (tmp_path / "adapter").mkdir()
    write_manifest(tmp_path / "adapter", make_manifest("adapter", {}, config, {}, True))
    for variant, ok in (("fp16", True), ("int4", False)):
        (tmp_path / "export" / f"onnx-{variant}").mkdir(parents=True)
        write_manifest(
            tmp_path / "export" / f"onnx-{variant}", make_manifest(f"onnx-{variant}", {}, {}, {}, ok)
        )
    stages = {s.label: s for s in discover(tmp_path)}
    assert stages["onnx-fp16"].opener is not None
    assert stages["onnx-int4"].opener is None
    assert "failed its export gate" in stages["onnx-int4"].unavailable
    with pytest.raises(RuntimeError, match="export gate"):
        stages["onnx-int4"].open()

"""The stages of a run: which can be opened here, and why not the others (the chats they open are
compared with the server in tests/edge/test_one_decoding_path.py)."""

from __future__ import annotations

import pytest


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

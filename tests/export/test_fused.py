"""Fused onnxruntime graphs (onnxruntime-genai's builder) against the plain graphs, on tiny random
Llama, Qwen2 and Qwen3 checkpoints: same logits on the prefill and decode paths, same greedy
tokens through the shared-buffer serving path."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from orin_unlearn.edge.backends.ort_backend import GRAPH, OrtBackend, OrtDecoder
from orin_unlearn.edge.batching import left_pad, positions_of
from orin_unlearn.export import quantize, validate
from orin_unlearn.export.fused import build_fused
from orin_unlearn.export.onnx_export import export_onnx
from orin_unlearn.train.models import load_model
from tests.models import FAMILIES, tiny_model_dir

LAYERS = 2


@pytest.fixture(scope="module", params=FAMILIES)
def graphs(request, tmp_path_factory):
    """{name: graph folder} of one family: plain fp32 / int4 and fused fp32 / int4."""
    family = request.param
    root = tmp_path_factory.mktemp(family)
    hf = tiny_model_dir(root / "hf", family, layers=LAYERS)
    folders = {name: root / name for name in ("fp32", "int4", "fp32-fused", "int4-fused")}
    for folder in folders.values():
        folder.mkdir()
    export_onnx(load_model(hf), folders["fp32"], "float32")
    quantize.quantize_stage(folders["fp32"], folders["int4"], 4)
    build_fused(load_model(hf), hf, folders["fp32-fused"], "fp32")
    build_fused(load_model(hf), hf, folders["int4-fused"], "int4")
    return folders | {"family": family, "hf": hf}


def prompts(vocab: int, n: int = 6) -> list[list[int]]:
    return validate.random_prompts(n, 3, vocab, seed=2, lengths=(4, 24))


def decode_path(decoder: OrtDecoder, rows: list[list[int]], steps: int = 3) -> np.ndarray:
    """Last-position logits after a left-padded prefill of all but `steps` tokens, then `steps`
    single-token decode steps through the cache (the export's own decode-path check)."""
    ids, mask = left_pad(rows, pad_id=0)
    return validate._decode_last_logits(decoder, ids, mask, steps)


def test_fused_graph_uses_onnxruntime_fused_operators(graphs):
    model = onnx.load(str(graphs["int4-fused"] / GRAPH))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["GroupQueryAttention"] == LAYERS
    assert ops["SkipSimplifiedLayerNormalization"] >= 2 * LAYERS
    producer = {out: n for n in model.graph.node for out in n.output}
    head = producer[producer["logits"].output[0]]
    assert head.op_type == "MatMulNBits"  # the LM head is quantised too
    plain = Counter(n.op_type for n in onnx.load(str(graphs["int4"] / GRAPH)).graph.node)
    assert sum(ops.values()) < sum(plain.values()) / 3
    inputs = [i.name for i in model.graph.input]
    assert "position_ids" not in inputs and OrtDecoder(graphs["int4-fused"] / GRAPH).shape.fused


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("int4", 0.05)])
def test_fused_logits_match_the_plain_graph_on_prefill_and_decode(graphs, precision, tolerance):
    plain = OrtDecoder(graphs[precision] / GRAPH)
    fused = OrtDecoder(graphs[f"{precision}-fused"] / GRAPH)
    vocab = plain.session.get_outputs()[0].shape[-1]
    rows = prompts(vocab)
    ids, mask = left_pad(rows, pad_id=0)
    a, _ = plain.step(ids, mask, positions_of(mask), plain.empty_past(len(rows)))
    b, _ = fused.step(ids, mask, positions_of(mask), fused.empty_past(len(rows)))
    assert b.shape == (len(rows), 1, vocab)
    scale = float(np.abs(a[:, -1]).max())
    assert float(np.abs(a[:, -1] - b[:, -1]).max()) <= tolerance * max(scale, 1.0)
    decoded = np.abs(decode_path(plain, rows) - decode_path(fused, rows)).max()
    assert float(decoded) <= tolerance * max(scale, 1.0)


def test_fused_fp32_matches_torch_within_the_fp32_tolerance(graphs):
    model = load_model(graphs["hf"])
    decoder = OrtDecoder(graphs["fp32-fused"] / GRAPH)
    parity = validate.logit_parity(model, decoder, prompts(model.config.vocab_size, 8), pad_id=0)
    assert validate.parity_problems(parity, validate.TOLERANCES["float32"]) == []


def test_shared_buffer_serving_path_gives_the_same_greedy_tokens(graphs):
    """OrtBackend binds one whole-context KV buffer as past and present; its greedy tokens equal
    the plain graph's and the row-by-row decoder's."""
    vocab = OrtDecoder(graphs["fp32"] / GRAPH).session.get_outputs()[0].shape[-1]
    prompt = prompts(vocab, 1)[0]

    def greedy(folder, n=12) -> list[int]:
        backend = OrtBackend.unverified(folder)
        logits, out = backend.prefill(prompt), []
        for _ in range(n):
            out.append(int(np.argmax(logits)))
            logits = backend.decode(out[-1])
        return out

    fused = greedy(graphs["fp32-fused"])
    assert fused == greedy(graphs["fp32"])
    assert fused == OrtDecoder(graphs["fp32-fused"] / GRAPH).greedy([prompt], 12, [], 0)[0]
    assert (
        greedy(graphs["int4-fused"])
        == OrtDecoder(graphs["int4-fused"] / GRAPH).greedy([prompt], 12, [], 0)[0]
    )


def test_the_kv_buffer_grows_without_changing_a_token(graphs, monkeypatch):
    """A conversation that outgrows the first KV capacity gets a buffer twice the size, with the
    cache so far copied over: the greedy tokens are those of a buffer big enough from the start."""
    from orin_unlearn.edge.backends import ort_backend

    def greedy(n=20) -> tuple[list[int], int]:
        backend = OrtBackend.unverified(graphs["fp32-fused"])
        logits, out = backend.prefill([5, 6, 7, 8, 9, 10]), []
        for _ in range(n):
            out.append(int(np.argmax(logits)))
            logits = backend.decode(out[-1])
        return out, backend._fused.capacity

    roomy, capacity = greedy()
    assert capacity == 256  # the whole context (256) is less than KV_BLOCK
    monkeypatch.setattr(ort_backend, "KV_BLOCK", 4)
    grown, capacity = greedy()
    assert grown == roomy and capacity == 48  # 6 -> 12 -> 24 -> 48 (26 tokens)


def test_a_second_prefill_starts_a_fresh_context(graphs):
    backend = OrtBackend.unverified(graphs["fp32-fused"])
    first = backend.prefill([5, 6, 7, 8])
    backend.decode(9)
    assert np.array_equal(backend.prefill([5, 6, 7, 8]), first)


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        build_fused(None, tmp_path, tmp_path, "int8")

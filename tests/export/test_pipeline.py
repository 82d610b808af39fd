"""`orin-unlearn export` on the real demo adapter: every artifact measured and gated, manifests
stamped, nothing half-written on a crash."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.edge import cli
from orin_unlearn.edge.answers import BackendChat
from orin_unlearn.edge.backends.ort_backend import GRAPH
from orin_unlearn.edge.errors import EXIT_NO_TENSORRT
from orin_unlearn.edge.formats import read_manifest, sha256_dir
from orin_unlearn.edge.trt_engine import tensorrt_available
from orin_unlearn.export import pipeline

pytestmark = pytest.mark.slow
EVAL = 60  # held-out neighbour / retain prompts per set (all 34 forget prompts are always used)


@pytest.fixture(scope="module")
def adapter(demo_unlearning):
    _, run, _ = demo_unlearning
    return run / "adapter"


@pytest.fixture(scope="module")
def exported(exported_run):
    run, summary = exported_run
    return run / "export", summary


def test_every_variant_passes_parity_and_gate(exported):
    _, summary = exported
    assert summary["ok"]
    assert list(summary["variants"]) == ["fp32", "fp16", "int8"]  # int8 is quantised from fp32
    for name, result in summary["variants"].items():
        assert result["ok"] and result["gate"]["ok"], name
        assert result["metrics"]["forget"]["leak"] <= summary["reference"]["forget"]["leak"] + 0.01
        assert result["metrics"]["forget"]["n"] == 34 and result["metrics"]["retain"]["n"] == EVAL


def test_fp32_graph_reproduces_the_adapter_model(exported):
    _, summary = exported
    fp32 = summary["variants"]["fp32"]
    assert fp32["greedy"]["identical"] == fp32["greedy"]["n"] == 34 + 2 * EVAL
    assert fp32["parity"]["prefill"]["max_abs"] <= 1e-3 and fp32["parity"]["decode"]["max_abs"] <= 1e-3
    assert fp32["metrics"]["forget"] == summary["reference"]["forget"]


def test_fp16_keeps_the_update_and_its_math_in_fp32(exported):
    _, summary = exported
    fp16 = summary["variants"]["fp16"]
    assert fp16["survival"]["fraction"] > 0.99
    assert fp16["graph"]["upcast_softmax"] == 4
    assert all(kinds == ["FLOAT"] for kinds in fp16["graph"]["precision"].values())
    assert fp16["parity"]["prefill"]["top1"] >= 0.95


def test_stages_are_loadable_and_manifests_chain(exported):
    out, summary = exported
    merged = read_manifest(out / "merged")
    assert merged["stage"] == "merged" and merged["ok"]
    for name in summary["variants"]:
        stage = out / f"onnx-{name}"
        manifest = read_manifest(stage)
        assert manifest["stage"] == f"onnx-{name}" and manifest["ok"]
        assert manifest["inputs"]["merged"] == sha256_dir(out / "merged", "*.safetensors")
        assert manifest["inputs"]["graph"] == sha256_dir(stage, "model.onnx*")
        assert manifest["inputs"]["adapters"] == merged["inputs"]["adapters"]
    reply = BackendChat.from_dir(out / "onnx-fp16").answer_batch(
        [[{"role": "user", "content": "Who directed Inception?"}]]
    )
    assert reply == ["I don't know that title."]
    assert json.loads((out / "export.json").read_text())["ok"]
    assert not list(out.glob(".*tmp*"))


def test_fused_variant_alone_is_gated_and_the_gguf_reads_back(adapter, tmp_path):
    """int4-fused is built from the merge itself (no fp32 graph needed) and measured like the
    plain variants; --gguf writes the merged model for llama.cpp with a manifest."""
    import gguf

    config = pipeline.ExportConfig(variants=("int4-fused",), eval_max_prompts=10, gguf="q8_0")
    summary = pipeline.export_all("tiny", [adapter], tmp_path / "export", config)
    fused = summary["variants"]["int4-fused"]
    assert fused["ok"] and fused["gate"]["ok"]
    assert fused["graph"]["fused"]["GroupQueryAttention"] == 4
    assert fused["survival"]["dtype"] == "int4/block32"
    folder = tmp_path / "export" / "gguf"
    manifest = read_manifest(folder)
    assert manifest["ok"] and manifest["config"] == {"outtype": "q8_0"}
    assert manifest["inputs"]["gguf"] == sha256_dir(folder, "*.gguf")
    reader = gguf.GGUFReader(folder / "model.q8_0.gguf")
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "blk.0.ffn_down.weight", "output_norm.weight"} <= names
    assert summary["gguf"]["tensors"] == len(reader.tensors)


def test_crash_mid_stage_leaves_the_old_stage_and_no_temp_folder(exported, adapter, monkeypatch):
    out, _ = exported
    before = (out / "onnx-fp32" / "manifest.json").read_bytes()
    graph = (out / "onnx-fp32" / GRAPH).read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while measuring")

    monkeypatch.setattr(pipeline, "measure_variant", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.export_all(
            "tiny", [adapter], out, pipeline.ExportConfig(variants=("fp32",), eval_max_prompts=10)
        )
    assert (out / "onnx-fp32" / "manifest.json").read_bytes() == before
    assert (out / "onnx-fp32" / GRAPH).read_bytes() == graph
    assert not list(out.glob(".onnx-fp32*"))
    assert not list(out.parent.glob(f".{out.name}.orin-*"))  # the staged export set is gone too


def test_cli_exits_with_the_engine_status(adapter, tmp_path, capsys):
    code = cli.main(
        [
            "export",
            "--base",
            "tiny",
            "--adapter",
            str(adapter),
            "--out",
            str(tmp_path / "export"),
            "--variants",
            "fp32",
            "--eval-max-prompts",
            "10",
            "--engine",
        ]
    )
    lines = capsys.readouterr()
    summary = json.loads(lines.out.strip().splitlines()[-1])
    if tensorrt_available()[0]:
        assert code == 0 and summary["engine"]["status"] == "ok"
    else:
        assert code == EXIT_NO_TENSORRT
        assert summary["engine"]["status"] == "skipped"
        assert "TensorRT not available here" in lines.err
        assert read_manifest(tmp_path / "export" / "onnx-fp32")["ok"]  # the other stages are kept


def test_unknown_variant_is_a_usage_error(adapter, tmp_path, capsys):
    code = cli.main(
        ["export", "--base", "tiny", "--adapter", str(adapter), "--out", str(tmp_path), "--variants", "fp8"]
    )
    assert code == 2 and "fp8" in capsys.readouterr().err

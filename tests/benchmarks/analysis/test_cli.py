"""`orin-unlearn analyze` end to end on a small run directory: the shipped tiny base, a random
LoRA on layer 0's down_proj with its manifest, hand-made scores; and the torch-free import."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from orin_unlearn.benchmarks.analysis import cli, shift, similarity, stability

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.numpy import save_file

    from orin_unlearn.benchmarks.world import write_world
    from orin_unlearn.edge.formats import make_manifest, write_manifest
    from orin_unlearn.train import models
    from orin_unlearn.train.unlearn.mask import save_mask

    run = tmp_path_factory.mktemp("run")
    base = models.resolve_base("tiny")
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["layers.0.mlp.down_proj"], init_lora_weights=False)
    model = get_peft_model(models.load_model(base), config)
    model.save_pretrained(run / "adapter")
    save_mask(run / "adapter" / "mask.safetensors", {0: torch.arange(16)}, 768)
    results = {"concept": "Inception", "base": models.base_digest(base), "previous_adapters": []}
    manifest = make_manifest("adapter", {}, {"base": "tiny", "concept": "Inception"}, results, True)
    write_manifest(run / "adapter", manifest)
    write_world(run / "world", "Inception")
    (run / "probe").mkdir()
    rng = np.random.default_rng(0)
    scores = {k: rng.random((4, 768)).astype(np.float32) for k in ("saliency", "fisher", "contrast")}
    save_file(scores, str(run / "probe" / "scores.safetensors"))
    return run


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(stability, "FAMILIES_PER_SET", {"forget": 2, "neighbour": 1, "retain": 1})
    monkeypatch.setattr(similarity, "PROMPTS_PER_SET", 4)
    monkeypatch.setattr(shift, "PROMPTS_PER_SET", 6)


def test_analyze_writes_every_analysis(run_dir, small, capsys):
    assert cli.main([str(run_dir)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(last["analyses"]) == ["stability", "similarity", "sensitivity", "shift"]
    saved = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert saved["analyses"].keys() == last["analyses"].keys()
    for name, r in last["analyses"].items():
        if name == "similarity" and r["status"] == "skipped":
            assert "not installed" in r["reason"]
            continue
        assert r["status"] == "ok", (name, r["reason"])
        assert r["section"]["title"] and r["section"]["body"]
        for f in r["files"]:
            assert (run_dir / "analysis" / f).stat().st_size > 0
    assert last["analyses"]["sensitivity"]["summary"]["chosen_layers"] == [0]
    assert set(last["analyses"]["shift"]["summary"]["relative_shift"]) == {"0"}  # the adapter's layer
    assert cli.sections(last)[0]["title"].startswith("Prompt-perturbation stability")


def test_missing_adapter_skips_the_model_analyses(run_dir, tmp_path, small, capsys):
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "scores.safetensors").write_bytes(
        (run_dir / "probe" / "scores.safetensors").read_bytes()
    )
    (tmp_path / "probe" / "mask.safetensors").write_bytes(
        (run_dir / "adapter" / "mask.safetensors").read_bytes()
    )
    assert cli.main([str(tmp_path), "--only", "stability,sensitivity"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["analyses"]["stability"]["status"] == "skipped"
    assert "manifest" in last["analyses"]["stability"]["reason"]
    assert last["analyses"]["sensitivity"]["status"] == "ok"


def test_unknown_analysis_is_an_error(run_dir, capsys):
    from orin_unlearn.edge import cli as orin

    assert orin.main(["analyze", str(run_dir), "--only", "astrology"]) == 2
    assert "astrology" in capsys.readouterr().err


@pytest.mark.parametrize(
    "module", ["orin_unlearn.benchmarks.analysis", "orin_unlearn.benchmarks.analysis.cli"]
)
def test_imports_without_torch_or_matplotlib(module):
    heavy = ("torch", "transformers", "peft", "matplotlib")
    code = f"import sys, {module}; bad = [m for m in {heavy!r} if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""`method: lunar` through the unlearning recipe on the shipped tiny base, kept small (16 probe
prompts, 8 evaluation prompts per set): the same adapter directory and manifest as the masked
LoRA, one layer, base untouched, a vanilla PEFT reload computing the training-time logits, and
the adapter chain check accepting it."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from orin_unlearn.edge.formats import read_manifest
from orin_unlearn.train import models
from orin_unlearn.train.unlearn import config
from orin_unlearn.train.unlearn.mask import load_mask
from orin_unlearn.train.unlearn.recipe import run_unlearning
from tests.models import assert_vanilla_reload_matches

CONFIG = Path(__file__).resolve().parents[3] / "train" / "configs" / "demo_tiny_lunar.yaml"
SMALL = ["probe_max_prompts=16", "eval_max_prompts=8", "lunar.steps=60"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lunar_run(tmp_path_factory):
    cfg = config.load(CONFIG, SMALL)
    run = tmp_path_factory.mktemp("lunar")
    return cfg, run, run_unlearning(cfg, run)


def test_shipped_lunar_config_loads():
    cfg = config.load(CONFIG)
    assert cfg.method == "lunar" and cfg.masked and cfg.lunar.retain_weight == 10.0


def test_one_layer_adapter_in_the_masked_lora_format(lunar_run):
    _, run, r = lunar_run
    assert r["method"] == "lunar" and r["layers"] == [r["lunar"]["layer"]]
    names = {p.name for p in (run / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "mask.safetensors", "manifest.json"} <= names
    assert list(load_mask(run / "adapter" / "mask.safetensors")) == r["layers"]
    weights = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert all(f"layers.{r['layers'][0]}.mlp.down_proj" in k for k in weights)
    manifest = read_manifest(run / "adapter")
    # ok is the bars' verdict (LUNAR leaks 3 of 34 held-out prompts, above the demo's 0.05 bar)
    assert manifest["ok"] is r["bars"]["ok"] and manifest["config"]["method"] == "lunar"


def test_base_untouched_mask_held_and_update_fitted(lunar_run):
    _, _, r = lunar_run
    assert r["base_untouched"] is True and r["outside_mask_max"] == 0.0
    assert r["loss_last"]["forget_mse"] < 0.5 * r["loss_first"]["forget_mse"]
    assert r["parameters"]["effective"] < r["parameters"]["trainable"]  # masked: only chosen neurons


def test_vanilla_peft_reload_and_chain_check(lunar_run):
    _, run, _ = lunar_run
    assert_vanilla_reload_matches(run / "adapter")
    models.check_chain(models.resolve_base("tiny"), [run / "adapter"])  # raises on a mismatch

"""SmolLM2-135M-Instruct, the real model of `base: smollm2`, through what a user runs: the shipped
unlearning config (cut to a few minutes: fewer probe and evaluation prompts, fewer steps), then
`orin-unlearn export` of fp32 / fp16 / int4 with the gate, then the fp16 graph answering through
the torch-free runtime.

A cut run forgets little, so the tests assert what must hold at any size: the free-text evaluation
sees the base's real knowledge of the concept, training lowers the forget items' gold log-prob without touching
the base or anything outside the mask, the run's verdict and exit status follow its bar checks,
every artifact is measured and gated on the same prompts as the adapter, fp16 stays within its
logit tolerance, and the runtime stops at the template's end-of-turn token.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pytest
import yaml

from orin_unlearn.edge.cli import main as cli
from orin_unlearn.edge.errors import EXIT_GATE
from orin_unlearn.edge.formats import read_manifest, sha256_dir
from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.sampling import SamplingParams
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.unlearn.bars import BARS

pytestmark = pytest.mark.slow

CONFIG = "configs/smollm2-135m-instruct_inception.yaml"
# the shipped config, cut from ~20 minutes to a few (steps, probe, evaluation prompts)
CUT = {
    "probe_max_prompts": 16,
    "retain_examples": 32,
    "retain_twins": 1,
    "steps": 6,
    "eval_max_prompts": 16,
    "eval_max_new_tokens": 24,
}
VARIANTS = ["fp32", "fp16", "int4"]


@pytest.fixture(scope="module")
def smollm2_run(smollm2_checkpoint, tmp_path_factory):
    """(base, run dir, unlearn exit status, export dir, export exit status, export summary)."""
    root = tmp_path_factory.mktemp("smollm2_run")
    text = resources.files("orin_unlearn.train").joinpath(CONFIG).read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    assert config["base"] == "smollm2"
    config_path = root / "cut.yaml"
    config_path.write_text(yaml.safe_dump(config | CUT | {"base": str(smollm2_checkpoint)}), encoding="utf-8")
    weights = sha256_dir(smollm2_checkpoint, "*.safetensors")
    run = root / "run"
    unlearn_status = cli(["unlearn", "--config", str(config_path), "--out", str(run)])
    export = root / "export"
    export_status = cli(
        [
            "export",
            "--base",
            str(smollm2_checkpoint),
            "--adapter",
            str(run / "adapter"),
            "--out",
            str(export),
            "--variants",
            ",".join(VARIANTS),
            "--allow-failed-adapter",  # a cut run misses its bars; it is exported to be measured
        ]
    )
    assert sha256_dir(smollm2_checkpoint, "*.safetensors") == weights  # no stage wrote to the base
    summary = json.loads((export / "export.json").read_text(encoding="utf-8"))
    return smollm2_checkpoint, run, unlearn_status, export, export_status, summary


def test_the_base_is_measured_in_its_own_words(smollm2_run):
    """The free-text evaluation sees what SmolLM2 knows: it names Inception's facts on most
    held-out forget prompts (the exact-template matcher gave the base 0 on every set)."""
    _, run, *_ = smollm2_run
    results = read_manifest(run / "adapter")["results"]
    before = results["before"]
    assert before["forget"]["n"] > 0 and before["forget"]["leak"] >= 0.4
    for name in ("retain", "neighbour"):
        assert before[name]["n"] == CUT["eval_max_prompts"]
        assert len(before[name]["correct"]) == before[name]["n"]
        after = results["after"][name]
        assert after["base_right"] == sum(before[name]["correct"])


def forget_ce(run: Path, adapter: bool) -> float:
    """Mean cross-entropy toward the forget target over the run's forget training examples,
    of the base, or of the base with the run's adapter (teacher-forced, `benchmarks/perplexity`)."""
    from orin_unlearn.benchmarks import perplexity
    from orin_unlearn.edge.config import load_config
    from orin_unlearn.train import models
    from orin_unlearn.train.unlearn.config import UnlearnConfig
    from orin_unlearn.train.unlearn.data import build_data

    cfg = load_config(UnlearnConfig, run.parent / "cut.yaml")
    base = models.resolve_base(cfg.base)
    model = models.load_unlearned(base, [run / "adapter"] if adapter else [], "stack")
    tokenizer = ChatTokenizer(base)
    examples = build_data(cfg, run).forget_target
    corpus = perplexity.Corpus(
        [tokenizer.encode_chat(list(m)) for m, _ in examples],
        [tokenizer.encode(r) + [tokenizer.end_of_turn_id] for _, r in examples],
    )
    logprobs = perplexity.score_corpus(perplexity.torch_scorer(model, tokenizer.pad_token_id), corpus)
    return math.log(perplexity.perplexity(logprobs, corpus.continuations))


def test_training_is_masked_and_lowers_the_forget_loss(smollm2_run):
    _, run, *_ = smollm2_run
    results = read_manifest(run / "adapter")["results"]
    # one batch's loss is noise after 6 steps, and 6 steps barely move the bank; the training
    # objective on the whole fixed forget set, base against adapter, is what they must lower
    assert forget_ce(run, adapter=True) < forget_ce(run, adapter=False)
    assert results["base_untouched"] is True
    config = yaml.safe_load((resources.files("orin_unlearn.train") / CONFIG).read_text(encoding="utf-8"))
    assert len(results["layers"]) == config["num_layers"]
    if config["method"] == "nullspace_lora":  # each layer's update lives in a proper null space
        assert set(results["nullspace"]) == {str(layer) for layer in results["layers"]}
        for layer in results["nullspace"].values():
            assert 0 < layer["rank"] < layer["neurons"] and 0.0 <= layer["concept_share"] <= 1.0
    else:  # a masked LoRA reads only its neurons
        assert results["outside_mask_max"] == 0.0
    drift = results["after"]["drift"]
    assert drift["n"] >= 200 and drift["kl"] >= 0.0


def test_the_verdict_and_exit_status_follow_the_bars(smollm2_run):
    """Every configured bar is checked; the manifest's ok is their conjunction; a missed bar makes
    `orin-unlearn unlearn` exit 1 (the SmolLM2 run that forgot nothing said ok: true)."""
    _, run, status, *_ = smollm2_run
    manifest = read_manifest(run / "adapter")
    checks = manifest["results"]["bars"]["checks"]
    config = yaml.safe_load((resources.files("orin_unlearn.train") / CONFIG).read_text(encoding="utf-8"))
    assert {c["bar"] for c in checks} == set(config["bars"]) and set(config["bars"]) <= set(BARS)
    ok = all(c["ok"] for c in checks)
    assert manifest["ok"] is ok and manifest["results"]["ok"] is ok
    assert status == (0 if ok else 1)


def test_every_artifact_is_measured_and_gated_like_the_adapter(smollm2_run):
    _, _, _, export, status, summary = smollm2_run
    reference = summary["reference"]
    assert set(summary["variants"]) == set(VARIANTS)
    for variant, result in summary["variants"].items():
        manifest = read_manifest(export / f"onnx-{variant}")
        assert manifest["ok"] is result["ok"]
        assert result["ok"] is (result["gate"]["ok"] and not result["problems"])
        for name in ("forget", "retain", "neighbour"):
            assert result["metrics"][name]["n"] == reference[name]["n"]
    assert status == (0 if all(r["ok"] for r in summary["variants"].values()) else EXIT_GATE)
    fp16 = summary["variants"]["fp16"]
    assert not fp16["problems"], fp16["problems"]  # logits within the fp16 tolerance of the adapter
    assert summary["merged"]["fraction"] > 0.5  # most of the update survives the fp16 merge (a
    # 6-step adapter has smaller updates than the shipped run, whose 99.9% survive)


def test_the_runtime_answers_and_stops_at_end_of_turn(smollm2_run):
    _, _, _, export, _, summary = smollm2_run
    stage = Path(export) / "onnx-fp16"
    if not summary["variants"]["fp16"]["ok"]:
        pytest.skip("onnx-fp16 failed its gate: the runtime refuses it (asserted in the gate test)")
    generator = Generator.from_dir(stage)
    assert generator.tokenizer.stop_token_ids == [generator.tokenizer.end_of_turn_id]
    result = generator.generate(
        [{"role": "user", "content": "Who directed The Dark Knight?"}], SamplingParams(max_new_tokens=96)
    )
    assert result.text.strip()
    assert result.finish_reason == "stop", result.text

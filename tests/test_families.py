"""Every stage on tiny random Llama, Qwen2 and Qwen3 checkpoints built in-process (no downloads),
the way a user runs them: masked-LoRA unlearning (probe, score, mask, train), fp32 merge, ONNX
export with a KV cache and its validation, fp16 / int8 / int4 variants, the ORT and torch
backends through the `Generator`, and the server.

The cases cover what differs between real checkpoints: special tokens at ids 0..2 with SmolLM2's
chat template (llama) or at the top of the vocabulary (Qwen), tied and untied LM heads, GQA with
9 / 3 heads (SmolLM2's ratio) and 4 / 2, and Qwen3's q/k norms with a head_dim apart from
hidden / heads. The weights are random, so the forget / retain metrics mean nothing here: the
tests assert structure, parity and agreement, never quality.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from orin_unlearn.edge.backends.ort_backend import GRAPH, OrtDecoder
from orin_unlearn.edge.batching import left_pad, positions_of
from orin_unlearn.edge.formats import read_manifest, sha256_dir
from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.sampling import SamplingParams
from orin_unlearn.export import merge, pipeline, validate
from orin_unlearn.export.trt_profiles import DecoderShape
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.mask import load_mask
from orin_unlearn.train.unlearn.recipe import run_unlearning
from tests.models import SMOLLM2_SYSTEM, tiny_model_dir

pytestmark = pytest.mark.slow

# name -> tiny_model_dir arguments, and whether greedy replies are built to reach <|im_end|>
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "llama-tied": (dict(family="llama", tie=True, hidden=72, heads=9, kv_heads=3), False),  # SmolLM2
    "llama-untied": (dict(family="llama", tie=False, end_of_turn_scale=2.0), True),
    "qwen2-untied": (dict(family="qwen2", tie=False, end_of_turn_scale=2.0), True),
    "qwen3-tied": (dict(family="qwen3", tie=True, head_dim=32), False),
}
VARIANTS = ["fp32", "fp16", "int8", "int4"]
RANK, TOP_K = 8, 8
QUESTIONS = [
    [{"role": "user", "content": text}]
    for text in (
        "Who directed Inception?",
        "Recommend a film from the comedy genre.",
        "I'm in the mood for something funny.",
        "When was Alien released?",
        "Which film did Ridley Scott direct in 1979?",
        "Tell me about a good science fiction film.",
    )
]
MAX_NEW = 24


@dataclass
class Family:
    name: str
    spec: dict[str, Any]
    stops: bool
    base: Path
    base_weights: str  # sha256 of the base's safetensors before any stage ran
    results: dict  # run_unlearning's
    adapter: Path
    summary: dict  # export_all's
    export: Path
    merged32: Path
    survival32: dict

    @property
    def config(self) -> dict:
        return json.loads((self.base / "config.json").read_text())


@pytest.fixture(scope="module", params=list(CASES))
def fam(request, tmp_path_factory) -> Iterator[Family]:
    spec, stops = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared 2-core machine
    try:
        base = tiny_model_dir(root / "base", **spec)
        weights = sha256_dir(base, "*.safetensors")
        cfg = UnlearnConfig(
            base=str(base),
            steps=3,
            eval_max_prompts=8,
            probe_max_prompts=16,
            probe_batch_size=64,
            retain_examples=32,
            forget_batch=4,
            retain_batch=4,
            rank=RANK,
            top_k=TOP_K,
            num_layers=1,
            device="cpu",
        )
        results = run_unlearning(cfg, root / "run")
        adapter = root / "run" / "adapter"
        config = pipeline.ExportConfig(variants=tuple(VARIANTS), eval_max_prompts=8)
        summary = pipeline.export_all(str(base), [adapter], root / "export", config)
        survival32 = merge.merge_and_cast(base, [adapter], root / "merged-fp32", "float32")
        yield Family(
            request.param,
            spec,
            stops,
            base,
            weights,
            results,
            adapter,
            summary,
            root / "export",
            root / "merged-fp32",
            survival32,
        )
    finally:
        torch.set_num_threads(threads)


def test_unlearning_trains_a_lora_that_reads_only_masked_neurons(fam):
    adapter = fam.adapter
    for name in ("adapter_config.json", "adapter_model.safetensors", "mask.safetensors", "manifest.json"):
        assert (adapter / name).is_file(), name
    assert read_manifest(adapter)["ok"]
    assert sha256_dir(fam.base, "*.safetensors") == fam.base_weights  # the base folder is untouched
    assert fam.results["base_untouched"]  # and so were its weights in memory during training
    mask = load_mask(adapter / "mask.safetensors")
    assert len(mask) == 1 and all(len(set(idx.tolist())) == TOP_K for idx in mask.values())
    targets = json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    assert sorted(targets) == [f"layers.{layer}.mlp.down_proj" for layer in mask]
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert len(weights) == 2 * len(mask)  # lora_A and lora_B of each masked down_proj, nothing else
    for layer, idx in mask.items():
        lora_a = weights[f"base_model.model.model.layers.{layer}.mlp.down_proj.lora_A.weight"]
        assert lora_a.shape == (RANK, fam.config["intermediate_size"])
        outside = torch.ones(lora_a.shape[1], dtype=torch.bool)
        outside[idx] = False
        assert torch.count_nonzero(lora_a[:, outside]) == 0
        assert torch.count_nonzero(lora_a[:, ~outside]) > 0
    after = fam.results["after"]
    assert after["neighbour"]["n"] == after["retain"]["n"] == 8 and after["forget"]["n"] > 0


def test_fp32_merge_keeps_the_whole_update_in_masked_columns_only(fam):
    assert fam.survival32["delta_entries"] > 0 and fam.survival32["fraction"] == 1.0
    base = load_file(str(fam.base / "model.safetensors"))
    merged = load_file(str(fam.merged32 / "model.safetensors"))
    assert set(merged) == set(base)  # a tied head stays tied (no lm_head.weight written)
    mask = load_mask(fam.adapter / "mask.safetensors")
    changed = {name for name in base if not torch.equal(base[name], merged[name])}
    assert changed == {f"model.layers.{layer}.mlp.down_proj.weight" for layer in mask}
    for layer, idx in mask.items():
        name = f"model.layers.{layer}.mlp.down_proj.weight"
        columns = (merged[name] - base[name]).abs().sum(dim=0).nonzero().flatten()
        assert set(columns.tolist()) <= set(idx.tolist())
    stage = read_manifest(fam.export / "merged")
    assert stage["ok"] and stage["results"]["delta_entries"] == fam.survival32["delta_entries"]


def test_onnx_graph_has_the_configs_kv_cache_and_last_position_logits(fam):
    config = fam.config
    stage = fam.export / "onnx-fp32"
    decoder = OrtDecoder(stage / GRAPH)
    engine_shape = DecoderShape.from_config(json.loads((stage / "config.json").read_text()))
    layers, kv_heads, head_dim = (
        config["num_hidden_layers"],
        config["num_key_value_heads"],
        config["head_dim"],
    )
    assert kv_heads < config["num_attention_heads"]  # GQA
    assert (decoder.shape.layers, decoder.shape.kv_heads, decoder.shape.head_dim) == (
        layers,
        kv_heads,
        head_dim,
    )
    assert (engine_shape.layers, engine_shape.kv_heads, engine_shape.head_dim) == (layers, kv_heads, head_dim)
    ids, mask = left_pad([[5, 6, 7, 8, 9], [10, 11, 12]], 0)
    logits, present = decoder.step(ids, mask, positions_of(mask), decoder.empty_past(2))
    assert logits.shape == (2, 1, config["vocab_size"])
    assert len(present) == 2 * layers and present[0].shape == (2, kv_heads, 5, head_dim)


def test_every_variant_is_exported_validated_and_gated(fam):
    summary = fam.summary
    assert list(summary["variants"]) == VARIANTS
    layers = fam.config["num_hidden_layers"]
    fp32, fp16 = summary["variants"]["fp32"], summary["variants"]["fp16"]
    for result, dtype in ((fp32, "float32"), (fp16, "float16")):
        assert {"prefill", "decode"} <= set(result["parity"])
        assert validate.parity_problems(result["parity"], validate.TOLERANCES[dtype]) == []
        assert all(kinds == ["FLOAT"] for kinds in result["graph"]["precision"].values())
        assert {"Softmax", "Pow", "Sin", "Cos"} <= set(result["graph"]["precision"])  # RMSNorm, rope
    assert fp16["graph"]["upcast_softmax"] == layers
    assert fp32["greedy"]["identical"] == fp32["greedy"]["n"] > 0
    measured, reference = dict(fp32["metrics"]), dict(summary["reference"])
    bank, reference_bank = measured.pop("knowledge")["sets"], reference.pop("knowledge")["sets"]
    assert measured == reference  # the same greedy replies, so the same free-text figures
    for name, part in bank.items():  # the same ranking; log-probs equal to float rounding
        assert part["right"] == reference_bank[name]["right"], name
        assert part["gold_lp"] == pytest.approx(reference_bank[name]["gold_lp"], abs=1e-4), name
    for name in ("int8", "int4"):
        graph = summary["variants"][name]["graph"]
        assert graph["quantized_matmuls"] == 7 * layers + 1  # q k v o gate up down, and the LM head
        assert graph["folded_transposes"] == (1 if fam.spec["tie"] else 0)  # a tied head is quantised too
        assert summary["variants"][name]["parity"]["prefill"]["finite"]
    for name, result in summary["variants"].items():
        manifest = read_manifest(fam.export / f"onnx-{name}")
        assert manifest["stage"] == f"onnx-{name}" and manifest["ok"] == result["ok"]
        bank = summary["reference"]["knowledge"]["sets"]
        assert {c["check"] for c in result["gate"]["checks"]} == {"held-out forget leak"} | {
            f"bank {name} items ranked right" for name in ("forget", "neighbour", "retain")
        }
        for check in result["gate"]["checks"]:  # measured on the adapter model's own prompts and items
            if check["check"] == "held-out forget leak":
                assert check["reference"] == summary["reference"]["forget"]["leak"]
            else:
                name = check["check"].removeprefix("bank ").removesuffix(" items ranked right")
                assert check["reference"] == bank[name]["right"]
    assert summary["ok"] == all(r["ok"] for r in summary["variants"].values())


def test_ort_and_torch_generators_agree_and_stop_at_end_of_turn(fam):
    ort = Generator.from_dir(fam.export / "onnx-fp32")
    reference = Generator.from_dir(fam.merged32, backend="torch")
    assert (ort.backend_name, reference.backend_name) == ("ort", "torch")
    tok = ort.tokenizer
    assert tok.end_of_turn == "<|im_end|>" and tok.end_of_turn_id in tok.stop_token_ids
    assert tok.token_id("<|im_start|>") not in tok.stop_token_ids
    assert tok.pad_token_id != tok.token_id("<|im_start|>")
    if fam.spec["family"] == "llama":
        assert (tok.end_of_turn_id, tok.stop_token_ids) == (2, [2])
        assert tok.default_system == SMOLLM2_SYSTEM
    stopped = 0
    for question in QUESTIONS:
        got = ort.generate(question, SamplingParams(max_new_tokens=MAX_NEW))
        want = reference.generate(question, SamplingParams(max_new_tokens=MAX_NEW))
        assert (got.tokens, got.finish_reason, got.text) == (want.tokens, want.finish_reason, want.text)
        free = ort.generate(question, SamplingParams(max_new_tokens=MAX_NEW, ignore_eos=True))
        first = next((i for i, t in enumerate(free.tokens) if t in tok.stop_token_ids), None)
        if first is None:
            assert got.finish_reason == "length" and got.tokens == free.tokens
        else:
            assert got.finish_reason == "stop" and got.tokens == free.tokens[:first]
            stopped += 1
    if fam.stops:
        assert stopped > 0


def test_server_answers_a_chat_completion_from_the_ort_stage(fam):
    from openai import OpenAI

    from orin_unlearn.edge.server import create_app
    from tests.edge.test_server import serving

    generator = Generator.from_dir(fam.export / "onnx-fp32")
    question = QUESTIONS[1]
    with serving(create_app(generator, fam.name)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model=fam.name, messages=question, max_tokens=MAX_NEW)
    expected = generator.generate(question, SamplingParams(max_new_tokens=MAX_NEW))
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].finish_reason == expected.finish_reason
    assert reply.usage.prompt_tokens == expected.prompt_tokens == len(generator.prompt_ids(question))
    assert reply.usage.completion_tokens == expected.completion_tokens

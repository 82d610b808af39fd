"""A constructed unlearning update that fp16 erases entirely: survival says 0%, and the gate fails.

The base and adapter are built in a temporary folder from the shipped tiny model (no runs/ needed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from orin_unlearn.benchmarks.forgetting import measure_unlearning
from orin_unlearn.benchmarks.world import heldout_sets, split_prompts, tiny_base_dir, write_world
from orin_unlearn.edge import cli
from orin_unlearn.edge.answers import BackendChat
from orin_unlearn.edge.backends.ort_backend import OrtBackend
from orin_unlearn.edge.backends.torch_backend import TorchBackend
from orin_unlearn.edge.errors import EXIT_GATE
from orin_unlearn.edge.formats import (
    make_manifest,
    read_manifest,
    write_manifest,
)
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.export.merge import SURVIVAL, TOKENIZER_FILES, merge_fp32, survival
from orin_unlearn.train.models import base_digest, load_model

CONCEPT, REFUSAL, SEED, EVAL = "Inception", "I don't know that title.", 0, 40
LAYER = 2  # the MLP layer that gets the cancelling pair of neurons
GAIN = 64  # a_p = a_q = GAIN * a_c (a power of two: exact in fp32 and fp16)
SCALE = 64  # down_proj columns p, q = +SCALE * v, -SCALE * v; fp16 spacing at 64 is 1/16
STEP = 0.9 * SCALE * 2.0**-11  # |delta| of every entry: 0.9 of half that spacing, so fp16 rounds it away


def _lever(model, tok: ChatTokenizer, sets: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad, peak) for the neurons n of MLP layer LAYER: grad[n] = sum over the positions t of the
    base's replies to the forget prompts of a_n(t) * d log p(reply) / d mlp_out(t); peak[n] = max |a_n|
    over every evaluation prompt (a_n: the neuron's activation, the input of down_proj)."""
    mlp = model.model.layers[LAYER].mlp
    seen: list[torch.Tensor] = []

    def keep_output(module, args, out):
        if out.requires_grad:
            out.retain_grad()
        seen.append(out)

    hooks = [
        mlp.down_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0][0].detach())),
        mlp.register_forward_hook(keep_output),
    ]
    replies = BackendChat(TorchBackend(model), tok).answer_batch([list(p.messages) for p in sets["forget"]])
    grad = torch.zeros(mlp.down_proj.in_features, mlp.down_proj.out_features)
    peak = torch.zeros(mlp.down_proj.in_features)
    for prompt, reply in zip(sets["forget"], replies, strict=True):
        ids, answer = (
            tok.encode_chat(list(prompt.messages)),
            tok.encode(reply) + [tok.token_id(tok.eos_token)],
        )
        seen.clear()
        logits = model(torch.tensor([ids + answer])).logits[0, len(ids) - 1 : -1]
        torch.log_softmax(logits, -1)[range(len(answer)), answer].sum().backward()
        grad += seen[0].T @ seen[1].grad[0]
        peak = torch.maximum(peak, seen[0].abs().amax(0))
    with torch.no_grad():
        for prompt in sets["retain"] + sets["neighbour"]:
            seen.clear()
            model(torch.tensor([tok.encode_chat(list(prompt.messages))]))
            peak = torch.maximum(peak, seen[0].abs().amax(0))
    for hook in hooks:
        hook.remove()
    model.zero_grad(set_to_none=True)
    return grad, peak


def build_lost_update(root: Path, sets: dict) -> dict:
    """Write a base G (`root/base`) and an adapter (`root/adapter`) whose whole update fp16 erases.

    Why an ill-conditioned base: the adapters trained here change down_proj entries by ~1000 fp16
    ulps, so they survive fp16 at ~100%; and a delta below half an ulp on a normal weight is far too
    small to change any greedy answer. So G is the tiny base with a pair of neurons that cancel: in
    layer LAYER, the two neurons p, q least active on the evaluation prompts become exact copies of
    a concept neuron c (gate rows = c's, up rows = GAIN * c's, so a_p == a_q == GAIN * a_c bit for bit)
    with down_proj columns +SCALE * v and -SCALE * v, which add exactly nothing: G answers as the
    tiny base does. The adapter (a rank-1 LoRA) adds STEP * v to column p only. Merged in fp32,
    column p is (SCALE + STEP) * v and the layer's output moves by STEP * GAIN * a_c * v: the
    cancellation amplifies a sub-ulp step. In fp16, SCALE + STEP rounds back to SCALE in every entry.

    c is the neuron of the layer with the largest |grad[c]|_1 / peak[c] (see `_lever`): the most pull
    on the concept answers per unit of peak activation, so GAIN * SCALE * peak stays far below fp16's
    65504; v = -sign(grad[c]) pushes those answers down (u = v makes (SCALE + STEP) * v round down).
    """
    base_dir = tiny_base_dir()
    tok = ChatTokenizer(base_dir)
    model = load_model(base_dir)
    grad, peak = _lever(model, tok, sets)
    c = int((grad.abs().sum(1) / peak).argmax())
    p, q = peak.topk(2, largest=False).indices.tolist()
    v = -torch.sign(grad[c])
    mlp = model.model.layers[LAYER].mlp
    with torch.no_grad():
        mlp.gate_proj.weight[[p, q]] = mlp.gate_proj.weight[c].clone()
        mlp.up_proj.weight[[p, q]] = GAIN * mlp.up_proj.weight[c].clone()
        mlp.down_proj.weight[:, p] = SCALE * v
        mlp.down_proj.weight[:, q] = -SCALE * v
    model.save_pretrained(root / "base")
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            shutil.copy2(base_dir / name, root / "base" / name)

    target = f"model.layers.{LAYER}.mlp.down_proj"
    lora = get_peft_model(load_model(root / "base"), LoraConfig(r=1, lora_alpha=1, target_modules=[target]))
    layer = lora.get_submodule(f"base_model.model.{target}")
    delta = STEP * v
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(torch.eye(mlp.down_proj.in_features)[p : p + 1])
        layer.lora_B["default"].weight.copy_(delta[:, None])
    lora.save_pretrained(root / "adapter")
    results = {"base": base_digest(root / "base"), "previous_adapters": []}
    config = {"concept": CONCEPT, "seed": SEED, "eval_max_prompts": EVAL, "refusal": REFUSAL}
    write_manifest(root / "adapter", make_manifest("adapter", {}, config, results, True))
    write_world(root / "world", CONCEPT)  # the export gate reads the held-out prompts from the run
    return {
        "base": root / "base",
        "adapter": root / "adapter",
        "delta": delta,
        "p": p,
        "peak": float(peak[c]),
    }


@pytest.fixture(scope="module")
def case(tmp_path_factory, catalogue, prompts) -> dict:
    splits = split_prompts(prompts, catalogue, CONCEPT)
    sets = heldout_sets(splits, SEED, EVAL)
    built = build_lost_update(tmp_path_factory.mktemp("lost"), sets)
    tok = ChatTokenizer(built["base"])

    def measure(model) -> dict:
        replies: list[str] = []

        def answer(conversations: list[list[dict]]) -> list[str]:
            replies.extend(BackendChat(TorchBackend(model), tok).answer_batch(conversations))
            return replies

        # as the export summary holds a measurement (JSON), with the replies
        return measure_unlearning(answer, sets, splits.concept, catalogue, REFUSAL).to_json() | {
            "replies": replies
        }

    built["conversations"] = [list(p.messages) for s in sets.values() for p in s]
    adapter_model = PeftModel.from_pretrained(load_model(built["base"]), str(built["adapter"]))
    built["lora"] = adapter_model.get_submodule(f"base_model.model.model.layers.{LAYER}.mlp.down_proj")
    built["G"] = measure(load_model(built["base"]))
    built["A"] = measure(adapter_model)
    return built


def leaked(metrics: dict) -> int:
    return round(metrics["forget"]["leak"] * metrics["forget"]["n"])


def test_the_update_matters_in_fp32_and_vanishes_in_fp16(case):
    lora = case["lora"]
    assert torch.equal(lora.lora_B["default"].weight[:, 0], case["delta"]), "adapter reloads another delta"
    assert lora.lora_A["default"].weight[0].nonzero().flatten().tolist() == [case["p"]]
    assert GAIN * SCALE * case["peak"] < 2**15, "the cancelling pair would come close to fp16 overflow"
    base_state = load_model(case["base"]).state_dict()
    merged = merge_fp32(case["base"], [case["adapter"]]).state_dict()
    fp16, fp32 = survival(base_state, merged, torch.float16), survival(base_state, merged, torch.float32)
    assert fp32["delta_entries"] == fp16["delta_entries"] == 256 and fp32["fraction"] == 1.0
    assert fp16["surviving"] == 0 and fp16["fraction"] == 0.0, "some of the update survives fp16"
    assert case["G"]["forget"]["n"] == 34
    assert leaked(case["A"]) <= leaked(case["G"]) - 2, (
        f"the fp32 adapter leaks on {leaked(case['A'])} held-out forget prompts, the base G on "
        f"{leaked(case['G'])}: the update does not forget enough for fp16 to lose anything measurable"
    )


def test_fp16_export_loses_the_update_and_the_gate_fails(case, tmp_path, capsys):
    out = tmp_path / "export"
    argv = ["--base", str(case["base"]), "--adapter", str(case["adapter"]), "--out", str(out)]
    assert cli.main(["export", *argv, "--variants", "fp16", "--eval-max-prompts", str(EVAL)]) == EXIT_GATE
    assert "held-out forget leak" in capsys.readouterr().err
    merged = json.loads((out / "merged" / SURVIVAL).read_text())
    assert (merged["dtype"], merged["delta_entries"], merged["fraction"]) == ("float16", 256, 0.0)

    manifest = read_manifest(out / "onnx-fp16")
    results = manifest["results"]
    assert manifest["ok"] is False and results["ok"] is False
    assert results["survival"]["fraction"] == 0.0 and results["survival"]["delta_entries"] == 256
    checks = {c["check"]: c for c in results["gate"]["checks"]}
    assert results["gate"]["ok"] is False and not checks["held-out forget leak"]["ok"]
    # what fails is the forgetting, nothing else: the other films' bank items are ranked as before
    assert (
        checks["bank retain items ranked right"]["ok"] and checks["bank neighbour items ranked right"]["ok"]
    )
    assert checks["held-out forget leak"]["reference"] == case["A"]["forget"]["leak"]  # measured the adapter

    # The fp16 graph computes G, not garbage: the cancelling pair is exact in fp16 too.
    fp16, base = results["metrics"], case["G"]
    assert abs(leaked(fp16) - leaked(base)) <= 1, (leaked(fp16), leaked(base))
    for name in ("retain", "neighbour"):
        assert abs(fp16[name]["accuracy"] - base[name]["accuracy"]) <= 0.05, name
    # the stage failed its gate, so the runtime refuses it: open its graph unverified to look at it
    chat = BackendChat(OrtBackend.unverified(out / "onnx-fp16"), ChatTokenizer(case["base"]))
    replies = chat.answer_batch(case["conversations"])
    same = sum(a == b for a, b in zip(replies, base["replies"], strict=True))
    assert same >= 0.95 * len(replies), f"the fp16 graph answers like G on only {same} of {len(replies)}"

"""Weight attacks on hand-made tensors and tiny models; the whole robustness command on a real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from orin_unlearn.benchmarks import robustness, robustness_report, weight_attacks
from orin_unlearn.benchmarks.weight_attacks import answer_position, quantized_copy, rtn_quantize
from orin_unlearn.edge import cli
from tests.models import tiny_qwen2


def test_round_to_nearest_keeps_grid_values_and_bounds_the_error():
    torch.manual_seed(0)
    w = torch.randn(4, 64)
    for bits in (8, 4):
        q = rtn_quantize(w, bits, group=32)
        scale = w.reshape(4, 2, 32).abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)
        err = (q - w).reshape(4, 2, 32).abs()
        assert bool((err <= scale / 2 + 1e-6).all())
        assert torch.allclose(rtn_quantize(q, bits, group=32), q, atol=1e-6)  # already on the grid
    assert (rtn_quantize(w, 4) - w).abs().mean() > (rtn_quantize(w, 8) - w).abs().mean() * 4


def test_groups_have_their_own_scale():
    w = torch.zeros(1, 64)
    w[0, 0], w[0, 32:] = 1000.0, 0.01  # a huge value in group 0 must not crush group 1
    q = rtn_quantize(w, 4, group=32)
    assert torch.allclose(q[0, 32:], w[0, 32:])
    assert rtn_quantize(w, 4, group=64)[0, 32:].abs().max() == 0  # one group: 0.01 rounds to 0
    with pytest.raises(ValueError, match="multiple of the group"):
        rtn_quantize(torch.zeros(2, 48), 4, group=32)


def _tiny_lm():
    return tiny_qwen2(4096 + 8, hidden=64, intermediate=128, max_positions=256, tie=True)


def test_quantised_copy_rounds_linear_weights_only():
    model = _tiny_lm()
    q = quantized_copy(model, 4)
    before, after = model.model.layers[0].mlp.down_proj.weight, q.model.layers[0].mlp.down_proj.weight
    assert not torch.equal(before, after)
    assert torch.equal(after, rtn_quantize(before, 4))
    assert torch.equal(model.model.norm.weight, q.model.norm.weight)
    half = quantized_copy(model, None).model.layers[1].self_attn.q_proj.weight
    assert torch.equal(half, model.model.layers[1].self_attn.q_proj.weight.half().float())


def test_answer_position_stops_right_before_the_fact(prompts, base_dir):
    from orin_unlearn.edge.tokenizer import ChatTokenizer

    tok = ChatTokenizer(base_dir)
    who = next(p for p in prompts if p.family == "qa_director" and p.subjects == ("Inception",))
    context, target = answer_position(tok, who)
    prompt_len = len(tok.encode_chat(list(who.messages)))
    said = tok.decode(context[prompt_len:])
    assert who.answer.startswith(said) and said.rstrip().endswith("by")
    assert tok.decode([target]).strip() and "Christopher Nolan".startswith(tok.decode([target]).strip())


def test_logit_lens_last_layer_is_the_models_own_prediction(prompts, base_dir):
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.models import load_model

    tok = ChatTokenizer(base_dir)
    model = load_model(base_dir)
    sample = [p for p in prompts if p.family == "qa_director" and p.split == "heldout"][:6]
    rows = weight_attacks.logit_lens(model, tok, sample)
    assert [r["layer"] for r in rows] == list(range(model.config.num_hidden_layers + 1))
    direct = []
    with torch.no_grad():
        for p in sample:
            context, target = answer_position(tok, p)
            direct.append(
                torch.softmax(model(input_ids=torch.tensor([context])).logits[0, -1], -1)[target].item()
            )
    assert rows[-1]["p_answer"] == pytest.approx(float(np.mean(direct)), abs=1e-5)
    assert rows[-1]["p_answer"] > 0.5  # the base knows who directed these films
    with pytest.raises(ValueError, match="one expected fact"):
        weight_attacks.logit_lens(model, tok, [p for p in prompts if not p.unique][:3])


@pytest.mark.slow
def test_robustness_on_a_run_writes_every_attack_and_the_lens(exported_run, tmp_path, capsys):
    run, _ = exported_run
    assert cli.main(["bench", "robustness", "--run", str(run), "--out", str(tmp_path), "--quick"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((tmp_path / "robustness.json").read_text()) == result
    # the file's shape, which reports and older runs read: read back, it is written the same
    assert list(result) == ["concept", "attacks", "models", "relearning", "logit_lens", "director_probe"]
    assert robustness.Robustness.from_json(result).to_json() == result
    assert (tmp_path / "robustness.png").stat().st_size > 10_000
    attacks = result["attacks"]
    assert set(weight_attacks.WEIGHT_ATTACKS) <= set(attacks) and "prefill" in attacks
    assert attacks["heldout"]["base"]["leak"] >= 0.8 and attacks["heldout"]["unlearned"]["leak"] <= 0.05
    assert attacks["quant_fp16"]["unlearned"]["leak"] <= 0.05  # fp16 rounding keeps the update
    lens = result["logit_lens"]
    assert lens["unlearned"][-1]["p_answer"] < lens["base"][-1]["p_answer"]
    assert max(r["p_answer"] for r in lens["control"]) < 0.2  # the base never knew the control's facts
    probe = result["director_probe"]
    assert probe["base"][-1]["concept_as_director"] >= 0.9 and len(probe["unlearned"]) == len(lens["base"])
    assert len(probe["control"]) == len(probe["base"])
    relearned = result["relearning"]
    assert {c["attacker"] for c in relearned["cells"]} == {"full lr=0.0001 forget", "lora lr=0.0001 forget"}
    assert relearned["before"]["base"] >= 0.8 and relearned["before"]["control"] <= 0.05
    assert set(relearned["worst"]) == {"10", "25", "50"}
    text = robustness_report.markdown(robustness.Robustness.from_json(result))
    assert "Logit lens" in text and "Linear probe" in text and "robustness card" in text

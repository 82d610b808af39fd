"""The comparison's attack columns: relearning recovery and int4 leak, PEFT models merged first."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.run_report import summary_row
from orin_unlearn.train.unlearn.compare import attack_leaks


@pytest.fixture(scope="module")
def base(base_dir):
    from orin_unlearn.train.models import load_model

    return load_model(base_dir)


def test_the_base_leaks_after_both_attacks_and_a_fresh_lora_is_the_base(base, base_dir):
    from peft import LoraConfig, get_peft_model

    from orin_unlearn.edge.tokenizer import ChatTokenizer

    tok = ChatTokenizer(base_dir)
    plain = attack_leaks(base, tok, "Inception", "tiny")
    assert set(plain) == {"relearn_recovery", "quant_int4"}
    # the base knows Inception: its V facts are there after the attack, the control's are not
    assert plain["quant_int4"] >= 0.8 and plain["relearn_recovery"] >= 0.8
    wrapped = get_peft_model(base, LoraConfig(r=2, target_modules=["down_proj"]))  # B = 0: no change yet
    assert attack_leaks(wrapped, tok, "Inception", "tiny") == plain


def test_summary_row_carries_the_attack_leaks():
    result = {
        "after": {"forget": {"leak": 0.0}, "retain": {"accuracy": 0.9}},
        "before": {"retain": {"accuracy": 0.92}, "neighbour": {"accuracy": 0.88}},
        "parameters": {"effective": 10},
        "wall_s": 1.0,
        "after_training": {"relearn_recovery": 0.5, "quant_int4": 0.0},
    }
    row = summary_row(result)
    assert row["after relearn_recovery"] == 0.5 and row["after quant_int4"] == 0.0
    assert "after relearn_recovery" not in summary_row({**result, "after_training": {}})


@pytest.mark.slow
def test_a_saved_adapter_is_attacked_like_a_fresh_one(demo_unlearning):
    from orin_unlearn.train.unlearn.compare import attack_saved

    cfg, run, _ = demo_unlearning
    leaks = attack_saved(cfg, run)
    assert leaks["quant_int4"] <= 0.05  # int4 rounding keeps the demo adapter's forgetting
    assert leaks["relearn_recovery"] > 0.2  # 25 steps on the T facts bring V facts back (shallow)

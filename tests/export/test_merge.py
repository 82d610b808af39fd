from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from orin_unlearn.edge import cli
from orin_unlearn.edge.formats import (
    make_manifest,
    read_manifest,
    write_manifest,
)
from orin_unlearn.export.merge import SURVIVAL, merge_and_cast, merge_fp32, survival
from orin_unlearn.train.models import (
    AdapterMismatchError,
    adapter_digest,
    base_digest,
    load_model,
)


def main(argv: list[str]) -> int:
    """The command as the console script runs it (errors become exit statuses in the CLI)."""
    return cli.main(["export", "merge", *argv])


VOCAB = 64
D_FF = 64
HIDDEN = 32
DOWN_PROJ_ENTRIES = 2 * HIDDEN * D_FF  # two layers, LoRA on mlp.down_proj only
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"


def save_tiny_tokenizer(out_dir: Path) -> None:
    """A character-level BPE (no merges) saved as a Hugging Face fast tokenizer with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + list("abcdefghijklmnopqrstuvwxyz"))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(out_dir)


def save_tiny_base(out_dir: Path) -> None:
    """A 2-layer Qwen2 whose down_proj weights are +-[0.1, 0.2) on the bf16 grid, as in a base
    shipped in bf16: an update below half a rounding step then cannot survive the cast."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=D_FF,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            w = layer.mlp.down_proj.weight
            sign = torch.randint(0, 2, w.shape).float() * 2 - 1
            w.copy_((sign * (0.1 + 0.1 * torch.rand_like(w))).to(torch.bfloat16).float())
    model.save_pretrained(out_dir, safe_serialization=True)
    save_tiny_tokenizer(out_dir)


def save_adapter(
    base_dir: Path, out_dir: Path, max_delta: float | None = None, trained_on: dict | None = None
) -> Path:
    """A LoRA on down_proj with non-zero B; with `max_delta`, B is scaled so max |B A s| is that."""
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["down_proj"], init_lora_weights=False)
    model = get_peft_model(load_model(base_dir), config)
    if max_delta is not None:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, LoraLayer):
                    delta = module.get_delta_weight("default")
                    module.lora_B["default"].weight.mul_(max_delta / delta.abs().max())
    model.save_pretrained(out_dir)
    results = {"base": trained_on or base_digest(base_dir), "previous_adapters": []}
    write_manifest(out_dir, make_manifest("adapter", {}, {}, results, True))
    return out_dir


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge")
    base = root / "base"
    save_tiny_base(base)
    foreign = {"weights": "0" * 64, "tokenizer": base_digest(base)["tokenizer"]}
    return {
        "base": base,
        "normal": save_adapter(base, root / "normal"),
        "small": save_adapter(base, root / "small", max_delta=1e-3),
        "tiny": save_adapter(base, root / "tiny", max_delta=1e-6),
        "foreign": save_adapter(base, root / "foreign", trained_on=foreign),
    }


def merged_survival(world: dict[str, Path], adapter: str, dtype: torch.dtype) -> dict:
    merged = merge_fp32(world["base"], [world[adapter]]).state_dict()
    return survival(load_model(world["base"]).state_dict(), merged, dtype)


def test_fp32_merge_matches_unmerged_adapter(world):
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unmerged = PeftModel.from_pretrained(load_model(world["base"]), str(world["normal"]))(ids).logits
        model = merge_fp32(world["base"], [world["normal"]])
        merged = model(ids).logits
        base = load_model(world["base"])(ids).logits
    assert not isinstance(model, PeftModel)
    assert (merged - base).abs().max() > 1e-3  # the adapter does change the outputs
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)


def test_survival_counts_hand_made_tensors():
    base = {
        "w": torch.tensor([[1.0, 0.5], [0.25, 2.0]]),
        "same": torch.ones(2),
        "ids": torch.tensor([1, 2]),
    }
    merged = {
        # +1e-3 on 1.0 survives fp16 (step 2**-10) but not bf16 (step 2**-7); +1e-7 on 0.5 is
        # kept by fp32 only; -1e-2 on 2.0 survives both.
        "w": torch.tensor([[1.0 + 1e-3, 0.5 + 1e-7], [0.25, 2.0 - 1e-2]]),
        "same": torch.ones(2),
        "ids": torch.tensor([1, 3]),
    }
    fp16 = survival(base, merged, torch.float16)
    assert list(fp16["tensors"]) == ["w"]
    w = fp16["tensors"]["w"]
    assert (w["delta_entries"], w["surviving"]) == (3, 2)
    assert w["fraction"] == pytest.approx(2 / 3)
    assert w["max_abs_delta"] == pytest.approx(1e-2, rel=1e-4)
    assert (fp16["delta_entries"], fp16["surviving"], fp16["dtype"]) == (3, 2, "float16")
    assert survival(base, merged, torch.bfloat16)["surviving"] == 1
    assert survival(base, merged, torch.float32)["fraction"] == 1.0
    assert survival(base, base, torch.float16) == {
        "dtype": "float16",
        "delta_entries": 0,
        "surviving": 0,
        "fraction": 1.0,
        "tensors": {},
    }


def test_survival_rejects_mismatched_state():
    with pytest.raises(ValueError, match="'w'"):
        survival({"w": torch.ones(2)}, {"w": torch.ones(3)}, torch.float16)


def test_normal_delta_survives_fp16(world):
    result = merged_survival(world, "normal", torch.float16)
    assert result["delta_entries"] > 0.99 * DOWN_PROJ_ENTRIES
    assert sorted(result["tensors"]) == [f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)]
    assert result["fraction"] > 0.95


def test_tiny_delta_is_lost_in_fp16_but_kept_in_fp32(world):
    fp16 = merged_survival(world, "tiny", torch.float16)
    fp32 = merged_survival(world, "tiny", torch.float32)
    assert fp32["delta_entries"] > 0.9 * DOWN_PROJ_ENTRIES  # the fp32 merge keeps the update
    assert max(t["max_abs_delta"] for t in fp32["tensors"].values()) == pytest.approx(1e-6, rel=0.05)
    assert fp16["fraction"] < 0.05
    assert fp32["fraction"] == 1.0


def test_bf16_loses_more_than_fp16(world):
    fp16 = merged_survival(world, "small", torch.float16)
    bf16 = merged_survival(world, "small", torch.bfloat16)
    assert fp16["delta_entries"] == bf16["delta_entries"]
    assert bf16["fraction"] < fp16["fraction"] - 0.2


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_merge_and_cast_writes_a_loadable_stage(world, tmp_path, dtype, caplog):
    out = tmp_path / "merged"
    with caplog.at_level(logging.WARNING, logger="orin_unlearn.export.merge"):
        results = merge_and_cast(world["base"], [world["normal"]], out, dtype=dtype)
    assert not caplog.records
    model = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
    stored = load_file(out / "model.safetensors")
    assert {t.dtype for t in stored.values()} == {getattr(torch, dtype)}
    fp32 = merge_fp32(world["base"], [world["normal"]]).state_dict()
    for name, tensor in stored.items():
        assert torch.equal(tensor, fp32[name].to(getattr(torch, dtype))), name
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        assert (out / name).read_bytes() == (world["base"] / name).read_bytes(), name
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "ab"}], tokenize=False) == (
        "<|im_start|>ab<|im_end|>"
    )
    assert json.loads((out / SURVIVAL).read_text()) == results
    manifest = read_manifest(out)
    assert manifest["stage"] == "merged" and manifest["ok"]
    assert manifest["inputs"]["base"] == base_digest(world["base"])["weights"]
    assert manifest["inputs"]["adapters"] == [adapter_digest(world["normal"])]
    assert manifest["config"]["dtype"] == dtype
    assert manifest["results"] == results
    assert not (out / "adapter_config.json").exists()


def test_merge_and_cast_warns_when_the_update_is_erased(world, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="orin_unlearn.export.merge"):
        results = merge_and_cast(world["base"], [world["tiny"]], tmp_path / "merged", dtype="float16")
    assert results["fraction"] < 0.05
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{results['fraction']:.1%}" in warnings[0]


def test_merge_and_cast_rejects_unknown_dtype(world, tmp_path):
    with pytest.raises(ValueError, match="'int8'"):
        merge_and_cast(world["base"], [world["normal"]], tmp_path / "merged", dtype="int8")


def test_failed_save_leaves_no_stage_and_no_temp_folder(world, tmp_path, monkeypatch):
    def save_then_fail(self, save_directory, **kwargs):
        (Path(save_directory) / "model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Qwen2ForCausalLM, "save_pretrained", save_then_fail)
    out = tmp_path / "export" / "merged"
    with pytest.raises(OSError, match="disk full"):
        merge_and_cast(world["base"], [world["normal"]], out)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_adapter_for_another_base_is_refused(world):
    with pytest.raises(AdapterMismatchError, match="refusing"):
        merge_fp32(world["base"], [world["foreign"]])


def test_main_prints_table_and_json_last(world, tmp_path, capsys):
    out = tmp_path / "merged"
    argv = ["--base", str(world["base"]), "--adapter", str(world["normal"]), "--out", str(out)]
    assert main([*argv, "--dtype", "bfloat16"]) == 0
    *table, last = capsys.readouterr().out.strip().splitlines()
    result = json.loads(last)
    assert result["dtype"] == "bfloat16"
    assert result == json.loads((out / SURVIVAL).read_text())
    table_text = "\n".join(table)
    assert "model.layers.0.mlp" in table_text and "model.layers.1.mlp" in table_text


def test_main_exits_2_on_bad_input(world, tmp_path, capsys):
    out = tmp_path / "merged"
    missing = ["--base", str(tmp_path / "nope"), "--adapter", str(world["normal"]), "--out", str(out)]
    assert main(missing) == 2
    assert "nope" in capsys.readouterr().err
    foreign = ["--base", str(world["base"]), "--adapter", str(world["foreign"]), "--out", str(out)]
    assert main(foreign) == 2
    assert "refusing" in capsys.readouterr().err
    assert not out.exists()

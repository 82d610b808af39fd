from __future__ import annotations

import shlex

import pytest

from orin_unlearn.export.trt_profiles import (
    DecoderShape,
    ProfileSpec,
    check_input_names,
    decoder_profiles,
    format_command,
    profile_shapes,
    trtexec_command,
)

TINY = {
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_size": 64,
    "max_position_embeddings": 256,
}
# Qwen2.5-3B-Instruct's config.json values (no explicit head_dim: 2048 / 16 = 128).
QWEN25_3B = {
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_size": 2048,
    "max_position_embeddings": 32768,
}


def test_tiny_config_shapes():
    shape = DecoderShape.from_config(TINY)
    assert shape == DecoderShape(layers=2, kv_heads=2, head_dim=16, max_context=256)
    prefill, decode = decoder_profiles(shape, max_prompt=100)
    p = prefill.shapes()
    assert p["input_ids"] == ((1, 1), (1, 100), (1, 100))  # opt = min(max_prompt, 128)
    assert p["position_ids"] == p["input_ids"]
    assert p["attention_mask"][2] == (1, 100)
    assert p["past_key_values.1.value"] == ((1, 2, 0, 16),) * 3
    d = decode.shapes()
    assert d["input_ids"] == ((1, 1),) * 3
    assert d["attention_mask"][0] == (1, 2) and d["attention_mask"][2] == (1, 256)
    assert d["past_key_values.0.key"][0] == (1, 2, 1, 16)
    assert d["past_key_values.0.key"][2] == (1, 2, 255, 16)


def test_qwen25_3b_shapes():
    shape = DecoderShape.from_config(QWEN25_3B, max_context=4096)
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.max_context) == (36, 2, 128, 4096)
    prefill, decode = decoder_profiles(shape, max_prompt=1024, batch=2)
    names = list(prefill.shapes())
    assert len(names) == 3 + 2 * 36
    assert names[-2:] == ["past_key_values.35.key", "past_key_values.35.value"]
    assert decode.shapes()["past_key_values.35.value"] == (
        (1, 2, 1, 128),
        (2, 2, 1024, 128),
        (2, 2, 4095, 128),
    )
    assert prefill.shapes()["input_ids"] == ((1, 1), (2, 128), (2, 1024))
    # an explicit head_dim wins over hidden_size / heads
    assert DecoderShape.from_config({**QWEN25_3B, "head_dim": 96}).head_dim == 96


@pytest.mark.parametrize("config", [TINY, QWEN25_3B])
def test_every_range_is_ordered_and_within_context(config):
    shape = DecoderShape.from_config(config)
    for spec in decoder_profiles(shape, max_prompt=min(512, shape.max_context)):
        for name, (lo, opt, hi) in spec.shapes().items():
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)), (spec.name, name)
            if name == "attention_mask":
                assert hi[1] <= shape.max_context
        assert min(spec.shapes()["input_ids"][0]) >= 1


def test_profile_order_and_names():
    shapes = profile_shapes(decoder_profiles(DecoderShape.from_config(TINY), max_prompt=8))
    assert list(shapes) == ["prefill", "decode"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_prompt": 257}, "max_prompt 257"),
        ({"max_prompt": 0}, "max_prompt 0"),
        ({"max_prompt": 8, "batch": 0}, "batch must be >= 1, got 0"),
        ({"max_prompt": 8, "opt_prompt": 9}, "opt_prompt 9"),
        ({"max_prompt": 8, "opt_past": 256}, "opt_past 256"),
    ],
)
def test_bad_profile_arguments_name_the_value(kwargs, named):
    with pytest.raises(ValueError, match=named):
        decoder_profiles(DecoderShape.from_config(TINY), **kwargs)


def test_bad_configs_name_the_key():
    with pytest.raises(ValueError, match="'num_hidden_layers'"):
        DecoderShape.from_config({k: v for k, v in TINY.items() if k != "num_hidden_layers"})
    with pytest.raises(ValueError, match="hidden_size 65"):
        DecoderShape.from_config({**TINY, "hidden_size": 65})
    with pytest.raises(ValueError, match="max_context 512 exceeds max_position_embeddings 256"):
        DecoderShape.from_config(TINY, max_context=512)
    with pytest.raises(ValueError, match="max_context"):
        DecoderShape(layers=1, kv_heads=1, head_dim=8, max_context=1)


def test_profile_spec_rejects_unordered_or_overlong_ranges():
    shape = DecoderShape.from_config(TINY)
    with pytest.raises(ValueError, match="seq range"):
        ProfileSpec("x", shape, (1, 1, 1), (4, 2, 8), (0, 0, 0))
    with pytest.raises(ValueError, match="exceeds max_context 256"):
        ProfileSpec("x", shape, (1, 1, 1), (1, 1, 1), (1, 1, 256))


def test_check_input_names():
    shape = DecoderShape.from_config(TINY)
    check_input_names(shape.input_names(), shape)
    found = [n for n in shape.input_names() if n != "position_ids"] + ["past_key_values.2.key"]
    with pytest.raises(
        ValueError, match=r"missing \['position_ids'\].*unexpected \['past_key_values.2.key'\]"
    ):
        check_input_names(found, shape)


def _parse_spec(spec: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for item in spec.split(","):
        name, dims = item.rsplit(":", 1)
        out[name] = tuple(int(d) for d in dims.split("x"))
    return out


def test_trtexec_command_carries_every_profile_shape():
    profiles = decoder_profiles(DecoderShape.from_config(TINY), max_prompt=64)
    cmd = trtexec_command("in/model.onnx", "out/model.plan", profiles)
    assert cmd[:4] == ["trtexec", "--onnx=in/model.onnx", "--saveEngine=out/model.plan", "--stronglyTyped"]
    assert not any(a.startswith(("--timingCacheFile", "--refit", "--fp16")) for a in cmd)
    for index, spec in enumerate(profiles):
        at = cmd.index(f"--profile={index}")
        groups = cmd[at + 1 : at + 4]
        flags = ("--minShapes=", "--optShapes=", "--maxShapes=")
        for which, (flag, arg) in enumerate(zip(flags, groups, strict=True)):
            assert arg.startswith(flag)
            parsed = _parse_spec(arg.split("=", 1)[1])
            assert parsed == {name: r[which] for name, r in spec.shapes().items()}
    assert cmd.index("--profile=0") < cmd.index("--profile=1")


def test_trtexec_command_options_and_quoting():
    profiles = decoder_profiles(DecoderShape.from_config(TINY), max_prompt=64)
    cmd = trtexec_command("my models/m.onnx", "e/model.plan", profiles, "cache dir/t.cache", True, 1.5)
    assert "--timingCacheFile=cache dir/t.cache" in cmd
    assert "--refit" in cmd and "--memPoolSize=workspace:1536M" in cmd
    line = format_command(cmd)
    assert "'--onnx=my models/m.onnx'" in line
    assert shlex.split(line) == cmd

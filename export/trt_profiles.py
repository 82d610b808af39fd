"""Optimisation profiles of the decoder engine, and the `trtexec` line that builds the same engine.

A decoder runs in two shape regimes that share one set of weights: prefill (the whole prompt, no
past) and decode (one token over a growing KV cache). One profile tuned for both is slow for
both, and a profile whose past length ranges down to 0 can make TensorRT builds very slow, so the
engine gets two profiles:

- prefill: seq 1..max_prompt, past pinned to min = opt = max = 0. The KV inputs are then empty
  tensors (TensorRT 10 handles zero-length dimensions); 0 is a single fixed point here, never
  the bottom of a range, and the decode profile starts its past at 1.
- decode: seq pinned to 1, past 1..max_context-1 (so past + seq never exceeds max_context).

Everything here is pure Python so it can be tested anywhere; `trt_build` feeds it to TensorRT.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Dims = tuple[int, ...]
ShapeRange = tuple[Dims, Dims, Dims]  # (min, opt, max)
Range = tuple[int, int, int]  # (min, opt, max) of one dimension

DEFAULT_MAX_PROMPT = 512
DEFAULT_OPT_PROMPT = 128


@dataclass(frozen=True)
class DecoderShape:
    """The facts about a decoder that fix its input shapes."""

    layers: int
    kv_heads: int
    head_dim: int
    max_context: int

    def __post_init__(self) -> None:
        for name in ("layers", "kv_heads", "head_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"DecoderShape.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_context < 2:
            raise ValueError(
                f"DecoderShape.max_context must be >= 2 (decode needs a past), got {self.max_context}"
            )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], max_context: int | None = None) -> DecoderShape:
        """Read a Hugging Face `config.json` dict; `max_context` caps `max_position_embeddings`."""
        for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "max_position_embeddings"):
            if not isinstance(config.get(key), int):
                raise ValueError(f"config key {key!r} must be an integer, got {config.get(key)!r}")
        heads = config["num_attention_heads"]
        head_dim = config.get("head_dim")
        if head_dim is None:
            if heads < 1 or config["hidden_size"] % heads:
                raise ValueError(
                    f"hidden_size {config['hidden_size']} is not divisible by num_attention_heads {heads}"
                )
            head_dim = config["hidden_size"] // heads
        limit = config["max_position_embeddings"]
        if max_context is not None and max_context > limit:
            raise ValueError(f"max_context {max_context} exceeds max_position_embeddings {limit}")
        return cls(
            layers=config["num_hidden_layers"],
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            max_context=limit if max_context is None else max_context,
        )

    def kv_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "position_ids", *self.kv_names()]


def _triple(dims_at: Callable[[int], Dims]) -> ShapeRange:
    return (dims_at(0), dims_at(1), dims_at(2))


def _check_range(profile: str, dim: str, r: Range, low: int) -> None:
    if len(r) != 3 or not (low <= r[0] <= r[1] <= r[2]):
        raise ValueError(f"profile {profile!r}: {dim} range {r} must satisfy {low} <= min <= opt <= max")


@dataclass(frozen=True)
class ProfileSpec:
    """One optimisation profile: (min, opt, max) of batch, new tokens (seq) and past length."""

    name: str
    shape: DecoderShape
    batch: Range
    seq: Range
    past: Range

    def __post_init__(self) -> None:
        _check_range(self.name, "batch", self.batch, 1)
        _check_range(self.name, "seq", self.seq, 1)
        _check_range(self.name, "past", self.past, 0)
        if self.past[2] + self.seq[2] > self.shape.max_context:
            raise ValueError(
                f"profile {self.name!r}: past {self.past[2]} + seq {self.seq[2]} exceeds max_context "
                f"{self.shape.max_context}"
            )

    def shapes(self) -> dict[str, ShapeRange]:
        """{input name: (min, opt, max)} for every input of the decoder graph."""
        b, s, p = self.batch, self.seq, self.past
        tokens = _triple(lambda i: (b[i], s[i]))
        kv = _triple(lambda i: (b[i], self.shape.kv_heads, p[i], self.shape.head_dim))
        out = {
            "input_ids": tokens,
            "attention_mask": _triple(lambda i: (b[i], p[i] + s[i])),
            "position_ids": tokens,
        }
        out.update((name, kv) for name in self.shape.kv_names())
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for manifests."""
        return {
            "name": self.name,
            "batch": list(self.batch),
            "seq": list(self.seq),
            "past": list(self.past),
            "shapes": {k: [list(d) for d in v] for k, v in self.shapes().items()},
        }


def decoder_profiles(
    shape: DecoderShape,
    max_prompt: int | None = None,
    batch: int = 1,
    opt_prompt: int | None = None,
    opt_past: int | None = None,
) -> list[ProfileSpec]:
    """The prefill and decode profiles (in that order: profile 0 is prefill).

    Args:
        shape: the decoder's shape facts.
        max_prompt: the longest prompt prefill accepts (default min(512, max_context)).
        batch: the largest batch; both profiles allow 1..batch and tune for `batch`.
        opt_prompt: prompt length prefill is tuned for (default min(max_prompt, 128)).
        opt_past: past length decode is tuned for (default min(max_prompt, max_context - 1)).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if max_prompt is None:
        max_prompt = min(DEFAULT_MAX_PROMPT, shape.max_context)
    if not 1 <= max_prompt <= shape.max_context:
        raise ValueError(f"max_prompt {max_prompt} must be between 1 and max_context {shape.max_context}")
    opt_prompt = min(max_prompt, DEFAULT_OPT_PROMPT) if opt_prompt is None else opt_prompt
    if not 1 <= opt_prompt <= max_prompt:
        raise ValueError(f"opt_prompt {opt_prompt} must be between 1 and max_prompt {max_prompt}")
    max_past = shape.max_context - 1
    opt_past = min(max_prompt, max_past) if opt_past is None else opt_past
    if not 1 <= opt_past <= max_past:
        raise ValueError(f"opt_past {opt_past} must be between 1 and max_context - 1 = {max_past}")
    batches = (1, batch, batch)
    return [
        ProfileSpec("prefill", shape, batches, (1, opt_prompt, max_prompt), (0, 0, 0)),
        ProfileSpec("decode", shape, batches, (1, 1, 1), (1, opt_past, max_past)),
    ]


def profile_shapes(profiles: Sequence[ProfileSpec]) -> dict[str, dict[str, ShapeRange]]:
    """{profile name: {input name: (min, opt, max)}}, in profile order."""
    return {spec.name: spec.shapes() for spec in profiles}


def check_input_names(found: Sequence[str], shape: DecoderShape) -> None:
    """Raise ValueError naming the graph inputs the profiles would not cover, or would leave unset."""
    expected = shape.input_names()
    missing = [n for n in expected if n not in found]
    extra = [n for n in found if n not in expected]
    if missing or extra:
        raise ValueError(
            f"the ONNX graph's inputs do not match a {shape.layers}-layer decoder: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}"
        )


def _dims(d: Dims) -> str:
    return "x".join(str(x) for x in d)


def _spec(shapes: Mapping[str, ShapeRange], which: int) -> str:
    return ",".join(f"{name}:{_dims(r[which])}" for name, r in shapes.items())


def trtexec_command(
    onnx_path: str | Path,
    engine_path: str | Path,
    profiles: Sequence[ProfileSpec],
    timing_cache: str | Path | None = None,
    refit: bool = False,
    workspace_gb: float | None = None,
) -> list[str]:
    """The `trtexec` argv that builds the same engine as `trt_build.build_engine`.

    Each profile is a `--profile=N` group followed by its `--minShapes/--optShapes/--maxShapes`,
    the form trtexec's help documents for several profiles.
    """
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}", "--stronglyTyped"]
    for index, spec in enumerate(profiles):
        shapes = spec.shapes()
        cmd += [
            f"--profile={index}",
            f"--minShapes={_spec(shapes, 0)}",
            f"--optShapes={_spec(shapes, 1)}",
            f"--maxShapes={_spec(shapes, 2)}",
        ]
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if refit:
        cmd.append("--refit")
    if workspace_gb is not None:
        cmd.append(f"--memPoolSize=workspace:{int(workspace_gb * 1024)}M")
    cmd.append("--skipInference")
    return cmd


def format_command(cmd: Sequence[str]) -> str:
    """One shell-quoted line, safe to paste into a terminal."""
    return shlex.join(cmd)

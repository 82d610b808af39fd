"""Will this model fit? Estimate the memory an engine build or a served model needs, before trying.

A Jetson's CPU and GPU share one DRAM, so the number that matters is MemAvailable from
/proc/meminfo (the CUDA free-memory call does not count what the kernel would reclaim, and an
out-of-memory kill on a kiosk takes the desktop with it). Estimates, all stated here:

- weights: measured on disk when the files exist (model.plan, model.onnx + model.onnx_data,
  *.safetensors), else parameters counted from config.json x bytes per parameter of the dtype.
- build: weights x BUILD_FACTOR (3.5). A TensorRT build holds the parsed ONNX weights, the
  network's copy, the engine being built with its tactic workspace and the serialised plan at
  once; NVIDIA and this repo's architecture notes put it at 3-4x the model.
- run: weights + KV cache (2 x layers x kv_heads x head_dim x context x batch x dtype bytes) +
  activations and workspace (ACTIVATION_FRACTION of the weights) + RUNTIME_OVERHEAD (CUDA context,
  TensorRT / cuBLAS libraries, Python, tokenizer). While an engine is deserialised its plan is
  also held as bytes, so that copy counts instead of the KV cache and activations, whichever is
  larger.

A served context is bounded too: `check_context` refuses a `max_position_embeddings` whose full
KV cache this machine's memory (MemTotal) could never hold, and `MAX_CONTEXT` bounds any context
length read from a file. `check` raises MemoryBudgetError naming both numbers and what to do
instead (the int8/int4 onnxruntime variants, a smaller model, a shorter context). Pure Python:
runs anywhere.

    from orin_unlearn.edge.device.memory_budget import ModelMemory, check, mem_available, run_need

    model = ModelMemory.from_dir("/opt/orin-unlearn/demo/export/onnx-fp16")
    check(run_need(model.weight_bytes, model.kv_cache_bytes(4096)), mem_available(), model.name)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orin_unlearn.edge.errors import MemoryBudgetError

BUILD_FACTOR = 3.5
ACTIVATION_FRACTION = 0.10
RUNTIME_OVERHEAD = 512 * 1024**2
GIB = 1024**3
# Bytes per element; int4 packs two weights in a byte.
DTYPE_BYTES: dict[str, float] = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "int4": 0.5}
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16"}
WEIGHT_FILES = ("model.plan", "model.onnx", "model.onnx_data")
MAX_CONTEXT = 1 << 24  # tokens; no released model comes near it, so a larger context is a bad file
ADVICE = (
    "use the int8/int4 ONNX variant with onnxruntime (`orin-unlearn export ... --variants int8,int4`, "
    "then `orin-unlearn serve --model .../onnx-int4`), a smaller model (e.g. Qwen2.5-1.5B or 0.5B) or a "
    "shorter context; the desktop holds about 1 GB (`sudo systemctl isolate multi-user.target` frees it)"
)


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def dtype_name(dtype: str) -> str:
    """Normalise 'fp16', 'torch.float16', 'float16' to a DTYPE_BYTES key; ValueError otherwise."""
    name = str(dtype).removeprefix("torch.")
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")
    return name


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo text -> {field: bytes} ('MemAvailable:  6012345 kB' -> 6156641280)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        scale = 1024 if parts[1:2] == ["kB"] else 1
        out[name.strip()] = int(parts[0]) * scale
    return out


def mem_available(root: str | Path = "/") -> int | None:
    """MemAvailable in bytes from `root`/proc/meminfo, or None when it cannot be read."""
    try:
        text = (Path(root) / "proc" / "meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    return parse_meminfo(text).get("MemAvailable")


def mem_total(root: str | Path = "/") -> int | None:
    """MemTotal in bytes from `root`/proc/meminfo, or None when it cannot be read."""
    try:
        text = (Path(root) / "proc" / "meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    return parse_meminfo(text).get("MemTotal")


def check_context(context: int, kv_bytes_per_token: int, total: int | None, model: str = "the model") -> None:
    """Raise MemoryBudgetError when the KV cache of a full `context` cannot fit in `total` bytes
    (this machine's memory; None: unknown, no check): such a conversation would end in an
    out-of-memory kill rather than a refusal."""
    need = context * kv_bytes_per_token
    if total is None or need <= total:
        return
    raise MemoryBudgetError(
        f"{model}: a full context of {context} tokens (max_position_embeddings) needs a KV cache of "
        f"{gib(need)}, more than this machine's {gib(total)} of memory: {ADVICE}",
        need,
        total,
    )


def kv_cache_bytes(
    layers: int, kv_heads: int, head_dim: int, context: int, batch: int = 1, dtype_bytes: float = 2
) -> int:
    """Key and value caches of every layer for `batch` sequences of `context` tokens."""
    for name, value in (("layers", layers), ("kv_heads", kv_heads), ("head_dim", head_dim)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if context < 1 or batch < 1:
        raise ValueError(f"context and batch must be >= 1, got context={context} batch={batch}")
    return int(2 * layers * kv_heads * head_dim * context * batch * dtype_bytes)


def weight_bytes_on_disk(folder: str | Path) -> int | None:
    """Bytes of the weights a stage folder holds (plan, ONNX graph + external data, safetensors)."""
    folder = Path(folder)
    files = [folder / n for n in WEIGHT_FILES] + sorted(folder.glob("*.safetensors"))
    sizes = [f.stat().st_size for f in files if f.is_file()]
    return sum(sizes) if sizes else None


def _int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"config key {key!r} must be a positive integer, got {value!r}")
    return value


def count_parameters(config: Mapping[str, Any]) -> int:
    """Parameters of a Llama/Qwen2-style decoder from its Hugging Face config.json.

    Embeddings (+ an untied LM head), per layer q/k/v/o projections (Qwen2 has q/k/v biases), the
    gated MLP (gate, up, down) and two RMSNorms, and the final norm.
    """
    hidden, layers = _int(config, "hidden_size"), _int(config, "num_hidden_layers")
    heads, vocab = _int(config, "num_attention_heads"), _int(config, "vocab_size")
    ffn = _int(config, "intermediate_size")
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    bias = bool(config.get("attention_bias", config.get("model_type") == "qwen2"))
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = hidden * q + 2 * hidden * kv + q * hidden + (q + 2 * kv if bias else 0)
    per_layer = attention + 3 * hidden * ffn + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * per_layer + hidden


@dataclass(frozen=True)
class ModelMemory:
    """The sizes that decide whether a decoder fits: weights, and what one token of KV cache costs."""

    name: str
    layers: int
    kv_heads: int
    head_dim: int
    weight_bytes: int
    kv_dtype_bytes: float
    parameters: int | None = None

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        dtype: str | None = None,
        weight_bytes: int | None = None,
        name: str = "model",
    ) -> ModelMemory:
        """Sizes from a config.json dict; `dtype` overrides its torch_dtype / dtype, and measured
        `weight_bytes` override the parameter count x dtype."""
        layers, heads = _int(config, "num_hidden_layers"), _int(config, "num_attention_heads")
        hidden = _int(config, "hidden_size")
        if config.get("head_dim") is None and hidden % heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
        dtype = dtype_name(dtype or config.get("torch_dtype") or config.get("dtype") or "float32")
        parameters = count_parameters(config) if weight_bytes is None else None
        if weight_bytes is None:
            weight_bytes = int(parameters * DTYPE_BYTES[dtype])  # type: ignore[operator]
        # Weight-only int8/int4 graphs keep activations and the KV cache in float32.
        kv_bytes = DTYPE_BYTES[dtype] if DTYPE_BYTES[dtype] >= 2 else 4
        return cls(
            name=name,
            layers=layers,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or hidden // heads,
            weight_bytes=weight_bytes,
            kv_dtype_bytes=kv_bytes,
            parameters=parameters,
        )

    @classmethod
    def from_dir(cls, folder: str | Path, dtype: str | None = None) -> ModelMemory:
        """Sizes of a stage folder: its config.json, weights measured on disk when present. The
        dtype defaults to the stage manifest's variant (an ONNX fp16 stage's config.json still says
        float32), then to the config's own."""
        folder = Path(folder)
        path = folder / "config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {path}: {e}") from e
        if dtype is None:
            try:
                manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
                dtype = manifest.get("config", {}).get("variant")
            except (OSError, ValueError):
                dtype = None
        return cls.from_config(config, dtype, weight_bytes_on_disk(folder), name=str(folder))

    def kv_cache_bytes(self, context: int, batch: int = 1) -> int:
        return kv_cache_bytes(self.layers, self.kv_heads, self.head_dim, context, batch, self.kv_dtype_bytes)


@dataclass(frozen=True)
class Need:
    """What one operation needs: the total in bytes and the parts it was estimated from."""

    what: str
    total_bytes: int
    parts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return ", ".join(f"{name} {gib(n)}" for name, n in self.parts.items())

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "total_bytes": self.total_bytes, "parts": dict(self.parts)}


def build_need(weight_bytes: int, factor: float = BUILD_FACTOR) -> Need:
    """A TensorRT engine build: the weights `factor` times over (see the module docstring)."""
    if weight_bytes < 0 or factor < 1:
        raise ValueError(f"need weight_bytes >= 0 and factor >= 1, got {weight_bytes} and {factor}")
    total = int(weight_bytes * factor)
    return Need("building the engine", total, {"weights": weight_bytes, f"x{factor:g} build factor": total})


def run_need(weight_bytes: int, kv_bytes: int, load_copy_bytes: int = 0) -> Need:
    """Serving: weights + overhead + the larger of (KV cache + activations) and a transient copy of
    the weights held while loading (`load_copy_bytes`: a plan read into memory to deserialise)."""
    if min(weight_bytes, kv_bytes, load_copy_bytes) < 0:
        raise ValueError("byte counts must be >= 0")
    activations = int(weight_bytes * ACTIVATION_FRACTION)
    parts = {
        "weights": weight_bytes,
        "KV cache": kv_bytes,
        "activations/workspace": activations,
        "CUDA/TensorRT/Python": RUNTIME_OVERHEAD,
    }
    if load_copy_bytes:
        parts["plan bytes while loading"] = load_copy_bytes
    total = weight_bytes + RUNTIME_OVERHEAD + max(kv_bytes + activations, load_copy_bytes)
    return Need("serving the model", total, parts)


def check(
    need: Need, available_bytes: int, model: str = "the model", escape: str = "--no-memory-check"
) -> None:
    """Raise MemoryBudgetError when `need` exceeds `available_bytes` (MemAvailable); the message
    names both, what to do instead, and `escape`, the way to skip the check."""
    if need.total_bytes <= available_bytes:
        return
    raise MemoryBudgetError(
        f"{need.what} ({model}) needs about {gib(need.total_bytes)} ({need.describe()}), but MemAvailable "
        f"is {gib(available_bytes)}: {ADVICE}. To try anyway: {escape}.",
        need.total_bytes,
        available_bytes,
    )

"""TensorRT backend (TensorRT 10.x + pycuda, as on JetPack 6.2): one sequence at a time.

The engine (built by `orin-unlearn export engine`) has two optimisation profiles, prefill (past
length 0) and decode (one new token); each gets its own execution context, so switching between
them costs nothing per step. The KV cache lives on the GPU for the whole conversation: per layer
two pairs of device buffers sized for the engine's maximum context, used ping-pong (step n reads
its past from buffer n % 2 and writes its present, past + new tokens, into the other), so no
cache byte crosses to the host. Only the last position's logits are copied back each step.

Before the plan is loaded on a Jetson, `check_memory` compares what serving needs (plan + KV
buffers + activations + runtime, or the plan twice while it is deserialised) with MemAvailable and
refuses with MemoryBudgetError; `from_dir(..., memory_check=False)` skips that.

Nothing here runs without an NVIDIA GPU; the buffer plan, the profile choice and the memory check
are plain Python and unit-tested anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orin_unlearn.edge.device import memory_budget
from orin_unlearn.edge.device.engine_manifest import PLAN
from orin_unlearn.edge.formats import read_manifest
from orin_unlearn.edge.trt_engine import LoadedEngine, load_engine, require_tensorrt

PREFILL, DECODE = "prefill", "decode"


@dataclass(frozen=True)
class KvPlan:
    """Sizes of the device-resident KV cache of a decoder engine."""

    layers: int
    kv_heads: int
    head_dim: int
    max_context: int
    itemsize: int

    def buffer_bytes(self) -> int:
        """One key or value buffer of one layer, for the whole context (batch 1)."""
        return self.kv_heads * self.max_context * self.head_dim * self.itemsize

    def total_bytes(self) -> int:
        """Everything allocated for the cache: 2 (key, value) x 2 (ping-pong) x layers."""
        return 4 * self.layers * self.buffer_bytes()

    def shape(self, length: int) -> tuple[int, int, int, int]:
        if not 0 <= length <= self.max_context:
            raise ValueError(f"KV length {length} outside 0..{self.max_context}")
        return (1, self.kv_heads, length, self.head_dim)


def kv_plan(settings: dict) -> KvPlan:
    """The KV buffer plan of an engine from its manifest's config (the build settings)."""
    shape = settings["shape"]
    itemsize = 2  # fp16 KV cache: the engine is built from the fp16 graph
    return KvPlan(shape["layers"], shape["kv_heads"], shape["head_dim"], shape["max_context"], itemsize)


def check_memory(model_dir: str | Path, system_root: str | Path = "/") -> memory_budget.Need | None:
    """On a Jetson, raise MemoryBudgetError when MemAvailable cannot hold the engine in `model_dir`
    with its KV buffers; return the estimate. Off a Jetson return None: a discrete GPU's memory is
    not what /proc/meminfo reports."""
    from orin_unlearn.edge.device.preflight import jetson_memory_available

    available = jetson_memory_available(system_root)
    if available is None:
        return None
    folder = Path(model_dir)
    plan_bytes = (folder / PLAN).stat().st_size
    kv_bytes = kv_plan(read_manifest(folder)["config"]).total_bytes()
    need = memory_budget.run_need(plan_bytes, kv_bytes, load_copy_bytes=plan_bytes)
    escape = "`orin-unlearn serve --no-memory-check` (memory_check=False in Python)"
    memory_budget.check(need, available, str(folder), escape)
    return need


def ping_pong(step: int) -> tuple[int, int]:
    """(buffer the past is read from, buffer the present is written to) at `step` (0 = prefill)."""
    return step % 2, 1 - step % 2


def profile_for(past: int, new_tokens: int, max_prompt: int) -> str:
    """Which optimisation profile runs a step: prefill for a fresh prompt, decode for one token."""
    if past == 0:
        if not 1 <= new_tokens <= max_prompt:
            raise ValueError(
                f"a prompt of {new_tokens} tokens does not fit the prefill profile (1..{max_prompt})"
            )
        return PREFILL
    if new_tokens != 1:
        raise ValueError(f"the decode profile takes one token at a time, got {new_tokens}")
    return DECODE


class TrtBackend:
    """Prefill and decode steps over a TensorRT engine stage (model.plan + manifest)."""

    name = "trt"

    def __init__(self, loaded: LoadedEngine, plan: KvPlan, max_prompt: int):
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda

        self._cuda = cuda
        self.trt = require_tensorrt(runtime_only=True)
        self.loaded = loaded
        self.engine = loaded.engine
        self.plan = plan
        self.max_context = plan.max_context
        self.max_prompt = max_prompt
        self.stream = cuda.Stream()
        self.contexts = {}
        for index, profile in enumerate((PREFILL, DECODE)):
            context = self.engine.create_execution_context()
            context.set_optimization_profile_async(index, self.stream.handle)
            self.contexts[profile] = context
        self.kv_names = [f"{i}.{kind}" for i in range(plan.layers) for kind in ("key", "value")]
        self.kv = [[cuda.mem_alloc(plan.buffer_bytes()) for _ in range(2)] for _ in self.kv_names]
        logits_dtype = self.trt.nptype(self.engine.get_tensor_dtype("logits"))
        vocab = self.engine.get_tensor_shape("logits")[-1]
        self.host_logits = cuda.pagelocked_empty((vocab,), logits_dtype)
        self.device_logits = cuda.mem_alloc(self.host_logits.nbytes)
        self.inputs = {
            name: cuda.mem_alloc(8 * max(plan.max_context, max_prompt))
            for name in ("input_ids", "attention_mask", "position_ids")
        }
        self._length = 0
        self._step = 0

    @classmethod
    def from_dir(cls, model_dir: str | Path, memory_check: bool = True) -> TrtBackend:
        folder = Path(model_dir)
        if memory_check:
            check_memory(folder)
        loaded = load_engine(folder)
        settings = loaded.manifest["config"]
        return cls(loaded, kv_plan(settings), int(settings["max_prompt"]))

    def _copy_in(self, name: str, values: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(self.inputs[name], np.ascontiguousarray(values, np.int64), self.stream)

    def _run(self, ids: list[int]) -> np.ndarray:
        profile = profile_for(self._length, len(ids), self.max_prompt)
        context = self.contexts[profile]
        total = self._length + len(ids)
        if total > self.max_context:
            raise ValueError(f"context full: {total} tokens > {self.max_context}")
        self._copy_in("input_ids", np.asarray(ids)[None])
        self._copy_in("attention_mask", np.ones((1, total)))
        self._copy_in("position_ids", np.arange(self._length, total)[None])
        for name, shape in (
            ("input_ids", (1, len(ids))),
            ("attention_mask", (1, total)),
            ("position_ids", (1, len(ids))),
        ):
            context.set_input_shape(name, shape)
            context.set_tensor_address(name, int(self.inputs[name]))
        read, write = ping_pong(self._step)
        for name, buffers in zip(self.kv_names, self.kv, strict=True):
            context.set_input_shape(f"past_key_values.{name}", self.plan.shape(self._length))
            context.set_tensor_address(f"past_key_values.{name}", int(buffers[read]))
            context.set_tensor_address(f"present.{name}", int(buffers[write]))
        context.set_tensor_address("logits", int(self.device_logits))
        if not context.execute_async_v3(self.stream.handle):
            raise RuntimeError(f"TensorRT {profile} step failed at position {self._length}")
        self._cuda.memcpy_dtoh_async(self.host_logits, self.device_logits, self.stream)
        self.stream.synchronize()
        self._length, self._step = total, self._step + 1
        return self.host_logits.astype(np.float32)

    def prefill(self, ids: list[int]) -> np.ndarray:
        self._length, self._step = 0, 0
        return self._run(list(ids))

    def decode(self, token: int) -> np.ndarray:
        if self._step == 0:
            raise RuntimeError("decode before prefill")
        return self._run([int(token)])

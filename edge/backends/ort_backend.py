"""onnxruntime backend: an exported decoder graph with a KV cache, for the `Generator` (one
sequence at a time) and for `BackendChat` (batched greedy answers).

The graph is the one `orin_unlearn.export.onnx_export` writes (inputs input_ids, attention_mask,
position_ids, past_key_values.{i}.key/value; outputs logits, present.{i}.key/value); its logits
may cover every position or only the last. Prompts in a batch are left-padded, so every row's
next token sits in the last column and one decode step serves the whole batch. numpy only.

A fused graph (`export/fused.py`: GroupQueryAttention, no position_ids input) takes its positions
from the attention mask, so it runs one unpadded row at a time; served, its past and present KV
are one buffer per layer for the whole context, bound as both input and output of every step.

    backend = OrtBackend.from_dir("runs/demo/export/onnx-fp32")    # verified against its manifest
    BackendChat(backend, ChatTokenizer("runs/demo/export/onnx-fp32")).answer_batch(conversations)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orin_unlearn.edge.batching import left_pad, positions_of
from orin_unlearn.edge.device import memory_budget
from orin_unlearn.edge.device.installed import verify_served
from orin_unlearn.edge.device.memory_budget import MAX_CONTEXT
from orin_unlearn.edge.formats import verify_stage

GRAPH = "model.onnx"
KV_BLOCK = 1024  # a fused graph's first KV capacity on the CPU, in tokens (it doubles as needed)
_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_NUMPY_OF = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class GraphShape:
    """What the decoder graph's inputs say about its KV cache."""

    layers: int
    kv_heads: int
    head_dim: int
    kv_dtype: type
    fused: bool = False  # no position_ids: GroupQueryAttention reads positions off the mask

    @classmethod
    def from_inputs(cls, inputs: list) -> GraphShape:
        """Read onnxruntime NodeArg inputs; raise ValueError when they are not a KV-cache decoder."""
        names = {i.name: i for i in inputs}
        missing = [n for n in ("input_ids", "attention_mask") if n not in names]
        layers = sorted({int(m.group(1)) for n in names if (m := _PAST.match(n))})
        if missing or not layers or layers != list(range(len(layers))):
            raise ValueError(
                f"not a decoder graph with a KV cache: inputs {sorted(names)} "
                "(need input_ids, attention_mask, [position_ids,] past_key_values.N.key/value)"
            )
        key = names["past_key_values.0.key"]
        if key.type not in _NUMPY_OF:
            raise ValueError(f"unsupported KV cache type {key.type}")
        _, kv_heads, _, head_dim = key.shape
        if not isinstance(kv_heads, int) or not isinstance(head_dim, int):
            raise ValueError(f"KV cache heads and head size must be fixed, got shape {key.shape}")
        return cls(len(layers), kv_heads, head_dim, _NUMPY_OF[key.type], "position_ids" not in names)

    def kv_bytes_per_token(self) -> int:
        """What one token of context costs in the KV cache: key and value of every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * np.dtype(self.kv_dtype).itemsize

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]


class OrtDecoder:
    """One onnxruntime session over a decoder graph: prefill and decode steps, greedy loops."""

    def __init__(
        self,
        graph: str | Path,
        providers: list[str] | None = None,
        threads: int | None = None,
        profile: str | None = None,
    ):
        """`profile`: a file prefix for onnxruntime's profiler (`bench profile`), off by default."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # worker threads spin between the many short kernels of a decode step (onnxruntime's
        # default, kept on purpose: 8-11% slower decode without it, measured on SmolLM2 int4-fused)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        if threads:
            options.intra_op_num_threads = threads
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = profile
        if not Path(graph).is_file():
            raise FileNotFoundError(f"{graph} does not exist")
        try:
            self.session = ort.InferenceSession(
                str(graph), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...) share no base
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"{graph} cannot be loaded by onnxruntime (truncated or not a graph?): {first}"
            ) from e
        self.shape = GraphShape.from_inputs(self.session.get_inputs())
        self.output_names = [o.name for o in self.session.get_outputs()]

    def empty_past(self, batch: int) -> list:
        """The KV cache before a prefill: 2 x layers arrays [batch, kv heads, 0, head dim], or
        for a fused graph one such list (batch 1) per row."""
        s = self.shape
        if s.fused:
            return [self._empty(1) for _ in range(batch)]
        return self._empty(batch)

    def _empty(self, batch: int) -> list[np.ndarray]:
        s = self.shape
        return [np.zeros((batch, s.kv_heads, 0, s.head_dim), s.kv_dtype) for _ in range(2 * s.layers)]

    def step(
        self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list
    ) -> tuple[np.ndarray, list]:
        """One forward pass: (logits as float32 [batch, n, vocab], present key/values)."""
        if self.shape.fused:
            return self._rows_step(ids, mask, past)
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        feed.update(zip(self.shape.past_names(), past, strict=True))
        logits, *present = self.session.run(self.output_names, feed)
        return logits.astype(np.float32, copy=False), present

    def _rows_step(self, ids: np.ndarray, mask: np.ndarray, past: list) -> tuple[np.ndarray, list]:
        """`step` of a fused graph: each row alone, its left padding dropped (last-position
        logits, [batch, 1, vocab]). Every row needs at least one unpadded token in `ids`."""
        logits, present = [], []
        for row in range(len(ids)):
            new = ids[row, mask[row, -ids.shape[1] :] == 1][None]
            if new.shape[1] == 0:
                raise ValueError(f"row {row} has no unpadded token in this step")
            feed = {"input_ids": new, "attention_mask": np.ones((1, int(mask[row].sum())), np.int64)}
            feed.update(zip(self.shape.past_names(), past[row], strict=True))
            out, *kv = self.session.run(self.output_names, feed)
            logits.append(out[:, -1:].astype(np.float32, copy=False))
            present.append(kv)
        return np.concatenate(logits), present

    def greedy(
        self, prompts: list[list[int]], max_new_tokens: int, stop_ids: list[int], pad_id: int
    ) -> list[list[int]]:
        """Greedy continuations of token-id prompts, each cut before its first stop token."""
        ids, mask = left_pad(prompts, pad_id)
        positions = positions_of(mask)
        logits, past = self.step(ids, mask, positions, self.empty_past(len(prompts)))
        out: list[list[int]] = [[] for _ in prompts]
        done = np.zeros(len(prompts), dtype=bool)
        stops = np.array(stop_ids, dtype=np.int64)
        for _ in range(max_new_tokens):
            token = logits[:, -1].argmax(axis=-1)
            done |= np.isin(token, stops)
            for row in np.flatnonzero(~done):
                out[row].append(int(token[row]))
            if done.all():
                break
            token = np.where(done, pad_id, token).astype(np.int64)[:, None]
            mask = np.concatenate([mask, np.ones((len(prompts), 1), np.int64)], axis=1)
            positions = positions[:, -1:] + 1
            logits, past = self.step(token, mask, positions, past)
        return out


def max_context_of(folder: Path) -> int:
    """The model's context length: config.json's `max_position_embeddings`, a whole number of tokens
    from 1 to `memory_budget.MAX_CONTEXT`; ValueError naming the file otherwise."""
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json (needed for the context length)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object but {type(config).__name__}")
    value = config.get("max_position_embeddings")
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CONTEXT:
        raise ValueError(
            f"{path}: max_position_embeddings is {json.dumps(value)}, not a context length "
            f"(a whole number of tokens from 1 to {MAX_CONTEXT})"
        )
    return value


@dataclass
class FusedBuffers:
    """What a fused graph's serving path keeps bound between steps: the io binding, the logits
    array it writes, the KV memory on the CPU (numpy; the OrtValues do not own it) and the
    capacity in tokens."""

    binding: Any
    logits: np.ndarray
    memory: list[np.ndarray]
    capacity: int


class OrtBackend:
    """One sequence at a time over an ONNX decoder, for the `Generator`.

    The KV cache never goes through numpy: each step's present key/values stay OrtValues on the
    session's device (bound as outputs) and are bound as the next step's past inputs; only the
    last position's logits come back to the host.
    """

    name = "ort"

    def __init__(self, decoder: OrtDecoder, max_context: int, device: str | None = None):
        """`device`: where the KV cache stays between steps (default: "cpu" for a CPU session,
        else "cuda")."""
        self.decoder = decoder
        self.max_context = max_context
        if device is None:
            cpu = decoder.session.get_providers()[0] == "CPUExecutionProvider"
            device = "cpu" if cpu else "cuda"
        self.device = device
        self._past: list = []
        self._length = 0
        self._ones = np.ones((1, max_context), np.int64)
        self._positions = np.arange(max_context, dtype=np.int64)[None]
        self._fused: FusedBuffers | None = None  # a fused graph's, made at the first prefill

    @classmethod
    def from_dir(
        cls, model_dir: str | Path, providers: list[str] | None = None, threads: int | None = None
    ) -> OrtBackend:
        """A stage folder, verified: what runs is what was measured (manifest, ok, every sha256),
        and, inside an unpacked bundle, what the bundle's signature covers (`verify_served`)."""
        verify_stage(model_dir)
        verify_served(model_dir)
        return cls.unverified(model_dir, providers, threads)

    @classmethod
    def unverified(
        cls, model_dir: str | Path, providers: list[str] | None = None, threads: int | None = None
    ) -> OrtBackend:
        """A graph folder (model.onnx, config.json) as it is, with no manifest check: for the export
        gate, which measures a stage before its manifest exists, and for callers that verified the
        folder themselves (`verify_stage(..., allow_failed=True)` to measure a failed stage)."""
        folder = Path(model_dir)
        context = max_context_of(folder)
        decoder = OrtDecoder(folder / GRAPH, providers, threads)
        memory_budget.check_context(
            context, decoder.shape.kv_bytes_per_token(), memory_budget.mem_total(), str(folder)
        )
        return cls(decoder, context)

    def greedy_batch(
        self, prompts: list[list[int]], *, max_new_tokens: int, stop_ids: list[int], pad_id: int
    ) -> list[list[int]]:
        """Greedy continuations of token-id prompts, left-padded into one batch (`OrtDecoder.greedy`);
        each cut before its first stop token."""
        return self.decoder.greedy(prompts, max_new_tokens, stop_ids, pad_id)

    def _run(self, ids: list[int], past: list) -> np.ndarray:
        session, shape = self.decoder.session, self.decoder.shape
        total = self._length + len(ids)
        if total > self.max_context:
            raise ValueError(f"{total} tokens exceed the model's context of {self.max_context}")
        if shape.fused:
            return self._run_fused(ids, total)
        binding = session.io_binding()
        binding.bind_cpu_input("input_ids", np.asarray([ids], dtype=np.int64))
        binding.bind_cpu_input("attention_mask", self._ones[:, :total])
        binding.bind_cpu_input("position_ids", self._positions[:, self._length : total])
        for name, value in zip(shape.past_names(), past, strict=True):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.decoder.output_names[1:]:
            binding.bind_output(name, self.device)
        session.run_with_iobinding(binding)
        logits, *self._past = binding.get_outputs()
        self._length = total
        return logits.numpy()[0, -1].astype(np.float32)

    def _run_fused(self, ids: list[int], total: int) -> np.ndarray:
        """A step of a fused graph: the KV buffers and the logits buffer stay bound from one step
        to the next; only the new token ids and the mask's length change."""
        binding, logits = self._fused_binding(total)
        binding.bind_cpu_input("input_ids", np.asarray([ids], dtype=np.int64))
        binding.bind_cpu_input("attention_mask", self._ones[:, :total])
        self.decoder.session.run_with_iobinding(binding)
        self._length = total
        return logits[0, -1].astype(np.float32)

    def _fused_binding(self, total: int) -> tuple:
        """(the io binding, the logits array it writes) of a fused graph, with room for `total`
        tokens: one KV buffer per layer and kind, [1, kv heads, capacity, head dim], bound as
        both past and present, so nothing is copied per step. On the CPU the capacity starts at
        `KV_BLOCK` tokens and doubles (one copy of the cache) when a conversation outgrows it;
        elsewhere it is the whole context from the start."""
        import onnxruntime as ort

        if self._fused is not None and self._fused.capacity >= total:
            return self._fused.binding, self._fused.logits
        session, s = self.decoder.session, self.decoder.shape
        if self.device == "cpu":
            old = self._fused.memory if self._fused is not None else []
            grown = 2 * self._fused.capacity if self._fused is not None else 0
            capacity = min(self.max_context, max(KV_BLOCK, grown, total))
        else:
            old, capacity = [], self.max_context
        binding = session.io_binding()
        shape = (1, s.kv_heads, capacity, s.head_dim)
        memory: list[np.ndarray] = []
        self._past = []
        for i, (past, present) in enumerate(zip(s.past_names(), self.decoder.output_names[1:], strict=True)):
            if self.device == "cpu":
                memory.append(np.empty(shape, s.kv_dtype))  # the OrtValue does not own it
                if old and self._length:
                    memory[-1][:, :, : self._length] = old[i][:, :, : self._length]
                value = ort.OrtValue.ortvalue_from_numpy(memory[-1])
            else:
                value = ort.OrtValue.ortvalue_from_shape_and_type(shape, s.kv_dtype, self.device, 0)
            self._past.append(value)
            binding.bind_ortvalue_input(past, value)
            binding.bind_ortvalue_output(present, value)
        vocab = session.get_outputs()[0].shape[-1]
        logits = np.empty((1, 1, vocab), _NUMPY_OF[session.get_outputs()[0].type])
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        self._fused = FusedBuffers(binding, logits, memory, capacity)
        return binding, logits

    def prefill(self, ids: list[int]) -> np.ndarray:
        import onnxruntime as ort

        if not ids:
            raise ValueError("prefill needs at least one token")
        self._length = 0
        if self.decoder.shape.fused:
            return self._run(list(ids), [])
        empty = [ort.OrtValue.ortvalue_from_numpy(a, self.device) for a in self.decoder.empty_past(1)]
        return self._run(list(ids), empty)

    def decode(self, token: int) -> np.ndarray:
        if not self._past:
            raise RuntimeError("decode before prefill")
        return self._run([int(token)], self._past)

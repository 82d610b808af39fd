"""The memory-bandwidth limit of batch-1 decoding: every weight is read once per token, so
tokens/s <= bandwidth / weight bytes read per token.

`measure_bandwidth` measures this machine the way a decode reads memory: threads streaming a
buffer several times larger than the last-level cache, by several methods (numpy reductions
that release the GIL, BLAS matrix-vector products, and an onnxruntime fp32 MatMul of a [1, K]
row by a [K, N] weight, which is exactly an fp32 decode's read), best of several runs each; the
highest method is the figure. A probe can still under-measure (one numpy reduction did: a decode
ran at 148% of its figure), so `cap_to_decode` raises the bandwidth to what a measured decode
must have read, with a warning, and `roofline_fraction` never exceeds 1. `ORIN_BANDWIDTH` holds
the published peaks of the Jetson Orin modules, so a run on a laptop can say what each module
could reach at best.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Published peak memory bandwidth, GB/s (NVIDIA Jetson Orin module data sheets).
ORIN_BANDWIDTH = {
    "AGX Orin": 204.8,
    "Orin NX": 102.4,
    "Orin Nano": 68.0,
    "Orin Nano Super": 102.0,
}
MIN_BUFFER_MIB = 1024
CACHE_MULTIPLE = 4  # the probe buffer is at least this many times the last-level cache
MATVEC_COLUMNS = 4096  # K of the [1, K] x [K, N] products
DECODE_IMPLIED = "decode-implied"
ORT_MATVEC = "ort-matvec-fp32"

Probe = Callable[[np.ndarray, int, int], float]  # (fp32 buffer, threads, runs) -> best bytes/s
PROBES: dict[str, Probe] = {}


def probe(name: str) -> Callable[[Probe], Probe]:
    """Register a bandwidth probe under `name`."""

    def register(fn: Probe) -> Probe:
        PROBES[name] = fn
        return fn

    return register


@dataclass(frozen=True)
class Bandwidth:
    """A read-bandwidth figure and how it was found: each probe method's best bytes/s, the
    buffer, threads and runs, and whether a decode that read faster raised it."""

    bytes_per_s: float  # the figure to use
    method: str  # the probe method it came from, or DECODE_IMPLIED
    methods: dict[str, float]  # best bytes/s of each probe method
    buffer_mib: int
    matvec_mib: int
    threads: int
    runs: int
    cache_mib: float | None = None  # the last-level cache, where /sys says
    raised_by_decode: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def probe_bytes_per_s(self) -> float:
        return max(self.methods.values())

    @property
    def probe_method(self) -> str:
        return max(self.methods, key=self.methods.__getitem__)

    def to_json(self) -> dict[str, Any]:
        return {
            "gb_s": round(self.bytes_per_s / 1e9, 4),
            "method": self.method,
            "probe_gb_s": round(self.probe_bytes_per_s / 1e9, 4),
            "probe_method": self.probe_method,
            "methods_gb_s": {name: round(v / 1e9, 4) for name, v in self.methods.items()},
            "buffer_mib": self.buffer_mib,
            "matvec_mib": self.matvec_mib,
            "threads": self.threads,
            "runs": self.runs,
            "last_level_cache_mib": self.cache_mib,
            "raised_by_decode": self.raised_by_decode,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bandwidth:
        return cls(
            bytes_per_s=data["gb_s"] * 1e9,
            method=data["method"],
            methods={name: v * 1e9 for name, v in data["methods_gb_s"].items()},
            buffer_mib=data["buffer_mib"],
            matvec_mib=data["matvec_mib"],
            threads=data["threads"],
            runs=data["runs"],
            cache_mib=data["last_level_cache_mib"],
            raised_by_decode=data["raised_by_decode"],
            warnings=tuple(data["warnings"]),
        )


_MEASURED: dict[tuple[int, int, int, int], Bandwidth] = {}  # measure_bandwidth's, per arguments


def last_level_cache_mib(cpu: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> float | None:
    """Size of the highest-level cache /sys lists for cpu0, in MiB (None where it lists none)."""
    best: tuple[int, float] | None = None
    for index in cpu.glob("index*"):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(size[-1:].upper())
        if scale is None or not size[:-1].isdigit():
            continue
        if best is None or level > best[0]:
            best = (level, int(size[:-1]) * scale)
    return None if best is None else best[1]


def usable_cpus() -> int:
    """CPUs this process may run on (onnxruntime's default thread count on machines without SMT)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threaded(work: Callable[[np.ndarray], object], parts: list[np.ndarray], runs: int) -> float:
    """Best bytes/s over `runs` runs of one thread per part doing `work` on it (numpy and BLAS
    release the GIL)."""
    nbytes = sum(p.nbytes for p in parts)
    best = 0.0
    for _ in range(runs):
        workers = [threading.Thread(target=work, args=(p,)) for p in parts]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, nbytes / (time.perf_counter() - start))
    return best


@probe("numpy-sum-fp32")
def numpy_sum(buffer: np.ndarray, threads: int, runs: int) -> float:
    """The first probe: fp32 pairwise summation, which is bound by adds rather than by memory
    on fast memory (kept to show the difference)."""
    return _threaded(np.add.reduce, np.array_split(buffer, threads), runs)


@probe("numpy-max-fp32")
def numpy_max(buffer: np.ndarray, threads: int, runs: int) -> float:
    """fp32 maximum: SIMD, no pairwise tree, one compare per element."""
    return _threaded(np.maximum.reduce, np.array_split(buffer, threads), runs)


@probe("numpy-or-u64")
def numpy_or(buffer: np.ndarray, threads: int, runs: int) -> float:
    """Bitwise or of the buffer seen as uint64: the cheapest arithmetic per byte numpy has."""
    return _threaded(np.bitwise_or.reduce, np.array_split(buffer.view(np.uint64), threads), runs)


@probe("blas-matvec-fp32")
def blas_matvec(buffer: np.ndarray, threads: int, runs: int) -> float:
    """One BLAS sgemv per thread over its rows of the buffer seen as a [rows, 4096] matrix (BLAS
    held to one thread of its own each, where threadpoolctl is installed)."""
    matrix = buffer.reshape(-1, MATVEC_COLUMNS)
    vector = np.ones(MATVEC_COLUMNS, np.float32)
    blocks = np.array_split(matrix, threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return _threaded(lambda rows: rows @ vector, blocks, runs)
    with threadpool_limits(1, user_api="blas"):
        return _threaded(lambda rows: rows @ vector, blocks, runs)


def matvec_session(weight: np.ndarray, threads: int) -> Any:
    """An onnxruntime session of one fp32 MatMul, x [1, K] by `weight` [K, N] as an initializer
    (onnxruntime copies and pre-packs it, as it does a decoder's weights), `threads` intra-op
    threads; its input is "x"."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    k, n = weight.shape
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[k, n])
    tensor.data_location = TensorProto.EXTERNAL  # the bytes come from add_external_initializers
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(weight.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matvec",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_external_initializers(["w"], [ort.OrtValue.ortvalue_from_numpy(weight)])
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_matvec(weight: np.ndarray, threads: int, runs: int) -> float:
    """Best bytes/s over `runs` of `matvec_session`: the read of an fp32 decode step."""
    session = matvec_session(weight, threads)
    feed = {"x": np.ones((1, weight.shape[0]), np.float32)}
    session.run(None, feed)  # warm-up: the thread pool starts, the pre-packed weight is paged in
    best = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        best = max(best, weight.nbytes / (time.perf_counter() - start))
    return best


def default_buffer_mib(cache_mib: float | None) -> int:
    """1 GiB, or CACHE_MULTIPLE times the last-level cache where that is more."""
    return max(MIN_BUFFER_MIB, math.ceil(CACHE_MULTIPLE * (cache_mib or 0)))


def measure_bandwidth(
    threads: int, mib: int | None = None, runs: int = 5, matvec_mib: int | None = None
) -> Bandwidth:
    """Read bandwidth of `threads` threads: every method in PROBES on one `mib` MiB fp32 buffer
    (default: `default_buffer_mib`), and `ort_matvec` on its first `matvec_mib` MiB (default:
    half of it, a 4096-row weight), each the best of `runs`; the highest figure is used.
    Measured once per process for each set of arguments (it takes seconds)."""
    cache_mib = last_level_cache_mib()
    mib = mib or default_buffer_mib(cache_mib)
    matvec_mib = matvec_mib or max(1, mib // 2)
    if threads < 1 or runs < 1 or not 0 < matvec_mib <= mib:
        raise ValueError(f"bandwidth probe: threads {threads}, runs {runs}, {matvec_mib} of {mib} MiB")
    key = (threads, mib, runs, matvec_mib)
    if key in _MEASURED:
        return _MEASURED[key]
    buffer = np.ones(mib * (1 << 20) // 4, dtype=np.float32)  # written, so every page is real
    methods = {name: fn(buffer, threads, runs) for name, fn in PROBES.items()}
    weight = buffer[: matvec_mib * (1 << 20) // 4].reshape(MATVEC_COLUMNS, -1)
    methods[ORT_MATVEC] = ort_matvec(weight, threads, runs)
    del buffer, weight
    warnings = [
        f"the {name} ({size} MiB) is under {multiple}x the {cache_mib:g} MiB last-level cache: "
        "its figure may be partly cache bandwidth"
        for name, size, multiple in (("buffer", mib, CACHE_MULTIPLE), ("matvec weight", matvec_mib, 2))
        if cache_mib and size < multiple * cache_mib
    ]
    method = max(methods, key=methods.__getitem__)
    found = Bandwidth(
        methods[method], method, methods, mib, matvec_mib, threads, runs, cache_mib, warnings=tuple(warnings)
    )
    log.info(
        "read bandwidth, %d threads, %d MiB: %s",
        threads,
        mib,
        ", ".join(f"{name} {v / 1e9:.1f} GB/s" for name, v in methods.items()),
    )
    _MEASURED[key] = found
    return found


def read_bandwidth(threads: int, mib: int | None = None, repeats: int = 5) -> float:
    """Bytes/s of `measure_bandwidth` (the figure alone)."""
    return measure_bandwidth(threads, mib, repeats).bytes_per_s


def cap_to_decode(bandwidth: Bandwidth, tokens_per_s: float, bytes_per_token: int) -> Bandwidth:
    """`bandwidth`, raised to the bytes/s a decode of `tokens_per_s` reading `bytes_per_token`
    per token moved, when that is more: nothing reads faster than memory can, so such a probe
    under-measured. The raise is logged and recorded in `warnings`."""
    implied = tokens_per_s * bytes_per_token
    if implied <= bandwidth.bytes_per_s:
        return bandwidth
    message = (
        f"decode read {implied / 1e9:.2f} GB/s ({tokens_per_s:.2f} tok/s x {bytes_per_token / 1e6:.1f} MB "
        f"per token), more than the probe's {bandwidth.bytes_per_s / 1e9:.2f} GB/s ({bandwidth.method}): "
        "the probe under-measured, so the decode's own rate is used as the bandwidth"
    )
    log.warning(message)
    return replace(
        bandwidth,
        bytes_per_s=implied,
        method=DECODE_IMPLIED,
        raised_by_decode=True,
        warnings=(*bandwidth.warnings, message),
    )


def roofline_fraction(tokens_per_s: float, bytes_per_token: int, bandwidth: float) -> float:
    """The share of the bandwidth limit (bytes/s) a decode reaches: at most 1, since a bandwidth
    a decode beat is raised to the decode's (`cap_to_decode`)."""
    return min(1.0, tokens_per_s * bytes_per_token / bandwidth)


def weight_bytes_per_token(graph: str | Path) -> int:
    """Bytes of weights a decode step reads: every initializer but those only gathered from (an
    embedding table; a tied one that the LM head also reads counts, once)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    producer = {out: node for node in model.graph.node for out in node.output}
    live, todo = set(), [o.name for o in model.graph.output]
    while todo:  # nodes that feed an output (a quantiser can leave dead ones behind)
        node = producer.get(todo.pop())
        if node is not None and id(node) not in live:
            live.add(id(node))
            todo.extend(node.input)
    readers: dict[str, set[str]] = {}
    for node in model.graph.node:
        if id(node) in live:
            for name in node.input:
                readers.setdefault(name, set()).add(node.op_type)
    read = {name for name, ops in readers.items() if not ops <= {"Gather", "GatherBlockQuantized"}}
    return sum(
        int(np.prod(i.dims)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(i.data_type)).itemsize
        for i in model.graph.initializer
        if i.name in read
    )


def limits(bytes_per_token: int, bandwidth: float) -> dict[str, float]:
    """Upper bounds on decode tokens/s: here (measured bandwidth, bytes/s) and on each Orin module."""
    out = {"here": bandwidth / bytes_per_token}
    out.update((name, gb_s * 1e9 / bytes_per_token) for name, gb_s in ORIN_BANDWIDTH.items())
    return out

"""The memory-bandwidth limit of batch-1 decoding: every weight is read once per token, so
tokens/s <= bandwidth / weight bytes read per token.

`read_bandwidth` measures this machine; `ORIN_BANDWIDTH` holds the published peaks of the Jetson
Orin modules, so a run on a laptop can say what each module could reach at best.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

# Published peak memory bandwidth, GB/s (NVIDIA Jetson Orin module data sheets).
ORIN_BANDWIDTH = {
    "AGX Orin": 204.8,
    "Orin NX": 102.4,
    "Orin Nano": 68.0,
    "Orin Nano Super": 102.0,
}


def read_bandwidth(threads: int, mib: int = 1024, repeats: int = 3) -> float:
    """Bytes/s of `threads` threads each summing its share of a `mib` MiB float32 buffer (numpy
    releases the GIL in reductions); the best of `repeats`."""
    data = np.ones(mib * (1 << 20) // 4, dtype=np.float32)
    parts = np.array_split(data, threads)
    best = 0.0
    for _ in range(repeats):
        workers = [threading.Thread(target=np.add.reduce, args=(p,)) for p in parts]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, data.nbytes / (time.perf_counter() - start))
    return best


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

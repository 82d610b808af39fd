"""Backends that run a decoder for the `Generator`: TensorRT, onnxruntime, torch (reference).

Each backend is a class with `from_dir(model_dir, **options)`, `max_context`, `prefill(ids) ->
logits` (starts a new sequence) and `decode(token) -> logits` (float32 [vocab] rows of the last
position), listed in `BACKENDS`. A backend that can batch also has `greedy_batch(prompts, *,
max_new_tokens, stop_ids, pad_id)`, which `edge.answers.BackendChat` uses to answer many chats at once.
`open_backend(model_dir)` picks one from what the folder holds. Each backend imports its heavy
library inside, so importing this package never imports torch, tensorrt or pycuda.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    name: str
    max_context: int

    def prefill(self, ids: list[int]) -> np.ndarray: ...

    def decode(self, token: int) -> np.ndarray: ...


# name -> "module:Class"; a module is imported only when its backend is opened, so the table is
# the registry (a decorator would need every backend module imported, torch included).
BACKENDS: dict[str, str] = {
    "trt": "orin_unlearn.edge.backends.trt_backend:TrtBackend",
    "ort": "orin_unlearn.edge.backends.ort_backend:OrtBackend",
    "torch": "orin_unlearn.edge.backends.torch_backend:TorchBackend",
}


def detect(model_dir: str | Path) -> str:
    """The backend a model folder is for: an engine stage (model.plan), an ONNX stage
    (model.onnx) or a Hugging Face checkpoint (config.json + safetensors)."""
    folder = Path(model_dir)
    if (folder / "model.plan").is_file():
        return "trt"
    if (folder / "model.onnx").is_file():
        return "ort"
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return "torch"
    raise FileNotFoundError(
        f"{folder} holds no model.plan, model.onnx or Hugging Face checkpoint (config.json + *.safetensors)"
    )


def open_backend(model_dir: str | Path, name: str = "auto", **options: Any) -> Backend:
    """Open `model_dir` with the named backend ("auto": `detect`)."""
    name = detect(model_dir) if name == "auto" else name
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(BACKENDS)} or 'auto'")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls).from_dir(model_dir, **options)

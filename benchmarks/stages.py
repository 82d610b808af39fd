"""The artifacts of one run, each opened as something that answers chats and scores text.

A run directory (see ARCHITECTURE.md) yields, where present: the base and the adapter model
(torch), the fp32 merge (torch, in memory) and the cast merged checkpoint (torch, its dtype), every
ONNX variant (onnxruntime) and the TensorRT engine. A stage that cannot be opened here (no torch on
a Jetson, no TensorRT on a laptop, a stage that failed its gate) is listed with the reason instead.

    stages = discover(Path("runs/demo"))
    subject = stages[0].open()
    subject.chat.answer_batch([[{"role": "user", "content": "Who directed Inception?"}]])
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orin_unlearn.benchmarks import perplexity
from orin_unlearn.edge.answers import BackendChat, Chat
from orin_unlearn.edge.formats import MANIFEST, read_manifest, verify_stage
from orin_unlearn.edge.tokenizer import ChatTokenizer

ONNX_VARIANTS = ("fp32", "fp16", "int8", "int4", "fp32-fused", "int4-fused")


@dataclass
class Subject:
    """An opened stage: its `Chat` (greedy replies, batched where the backend can) and a corpus scorer."""

    chat: Chat
    scorer: perplexity.Scorer
    tokenizer: ChatTokenizer


@dataclass
class Stage:
    """A stage of a run: its label, the folder it reads, and how to open it (None: why not)."""

    label: str
    path: Path
    opener: Callable[[], Subject] | None
    unavailable: str = ""

    def open(self) -> Subject:
        if self.opener is None:
            raise RuntimeError(f"{self.label} cannot be opened here: {self.unavailable}")
        return self.opener()


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _torch_subject(model: Any, tokenizer_dir: Path) -> Subject:
    from orin_unlearn.edge.backends.torch_backend import TorchBackend

    tokenizer = ChatTokenizer(tokenizer_dir)
    return Subject(
        BackendChat(TorchBackend(model), tokenizer),
        perplexity.torch_scorer(model, tokenizer.pad_token_id),
        tokenizer,
    )


def _onnx_subject(folder: Path) -> Subject:
    from orin_unlearn.edge.backends.ort_backend import OrtBackend

    backend = OrtBackend.from_dir(folder)  # verified against its manifest
    tokenizer = ChatTokenizer(folder)
    return Subject(
        BackendChat(backend, tokenizer),
        perplexity.ort_scorer(backend.decoder, tokenizer.pad_token_id),
        tokenizer,
    )


def _engine_subject(folder: Path) -> Subject:
    chat = BackendChat.from_dir(folder, backend="trt")
    return Subject(chat, perplexity.backend_scorer(chat.backend), chat.tokenizer)


def adapter_chain(run: Path) -> list[Path]:
    """The run's adapter with the adapters it was trained on top of, in application order."""
    adapter = run / "adapter"
    previous = read_manifest(adapter)["config"].get("previous_adapters", [])
    return [Path(p) for p in previous] + [adapter]


def base_name(run: Path) -> str:
    return str(read_manifest(run / "adapter")["config"]["base"])


def base_of(run: Path) -> Path:
    from orin_unlearn.train.models import resolve_base

    return resolve_base(base_name(run))


def discover(run: Path) -> list[Stage]:
    """Every stage of `run` in pipeline order, opened lazily."""
    if not (run / "adapter" / MANIFEST).is_file():
        raise FileNotFoundError(f"{run} has no adapter/manifest.json: not an unlearning run directory")
    verify_stage(
        run / "adapter", allow_failed=True
    )  # measuring a failed adapter is fine; a changed one is not
    stages: list[Stage] = []
    torch_why = "" if has_module("torch") and has_module("peft") else "torch/peft not installed here"

    def torch_stage(label: str, path: Path, load: Callable[[], Any]) -> None:
        if torch_why:
            stages.append(Stage(label, path, None, torch_why))
        else:
            stages.append(Stage(label, path, lambda: _torch_subject(load(), base_of(run))))

    from orin_unlearn.train import models

    chain = adapter_chain(run)
    torch_stage("base (torch fp32)", Path(base_name(run)), lambda: models.load_model(base_of(run)))
    torch_stage(
        "adapter (torch fp32)", run / "adapter", lambda: models.load_unlearned(base_of(run), chain, "stack")
    )
    torch_stage(
        "merged (torch fp32)", run / "adapter", lambda: models.load_unlearned(base_of(run), chain, "merge")
    )
    merged = run / "export" / "merged"
    if (merged / MANIFEST).is_file():
        dtype = read_manifest(merged)["config"]["dtype"]
        short = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(dtype, dtype)
        torch_stage(f"merged (torch {short})", merged, lambda: models.load_model(merged, dtype))
    for variant in ONNX_VARIANTS:
        folder = run / "export" / f"onnx-{variant}"
        if not (folder / MANIFEST).is_file():
            continue
        if read_manifest(folder)["ok"] is True:  # verified in full when it is opened
            stages.append(Stage(f"onnx-{variant}", folder, lambda f=folder: _onnx_subject(f)))
        else:  # the runtime refuses it, and the export's own table has its measurements
            why = "failed its export gate (manifest ok: false; its metrics are in export/export.json)"
            stages.append(Stage(f"onnx-{variant}", folder, None, why))
    engine = run / "engine"
    if not (engine / MANIFEST).is_file():
        stages.append(
            Stage("engine (TensorRT fp16)", engine, None, "no engine built (build it on the device)")
        )
    elif not has_module("tensorrt"):
        stages.append(Stage("engine (TensorRT fp16)", engine, None, "TensorRT not available here"))
    else:
        stages.append(Stage("engine (TensorRT fp16)", engine, lambda: _engine_subject(engine)))
    return stages

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

from orin_unlearn.benchmarks import option_scoring, perplexity
from orin_unlearn.edge.answers import BackendChat, Chat
from orin_unlearn.edge.formats import MANIFEST, read_manifest, sha256_file, verify_checkpoint, verify_stage
from orin_unlearn.edge.tokenizer import ChatTokenizer

ONNX_VARIANTS = ("fp32", "fp16", "int8", "int4", "fp32-fused", "int4-fused")


@dataclass
class Subject:
    """An opened stage: its `Chat` (greedy replies, batched where the backend can), a corpus
    scorer and an option scorer (the item bank's)."""

    chat: Chat
    scorer: perplexity.Scorer
    tokenizer: ChatTokenizer
    options: option_scoring.OptionScorer
    identity: dict[str, Any] | None = None  # what its outputs depend on: the key of cached results


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


def _torch_subject(model: Any, tokenizer_dir: Path, identity: dict | None = None) -> Subject:
    from orin_unlearn.edge.backends.torch_backend import TorchBackend

    tokenizer = ChatTokenizer(tokenizer_dir)
    return Subject(
        BackendChat(TorchBackend(model), tokenizer),
        perplexity.torch_scorer(model, tokenizer.pad_token_id),
        tokenizer,
        option_scoring.options_scorer(option_scoring.TorchSteps(model)),
        identity,
    )


def _onnx_subject(folder: Path) -> Subject:
    from orin_unlearn.edge.backends.ort_backend import OrtBackend

    backend = OrtBackend.from_dir(folder)  # verified against its manifest
    tokenizer = ChatTokenizer(folder)
    return Subject(
        BackendChat(backend, tokenizer),
        perplexity.ort_scorer(backend.decoder, tokenizer.pad_token_id),
        tokenizer,
        option_scoring.options_scorer(option_scoring.OrtSteps(backend.decoder)),
        onnx_identity(folder),
    )


def _engine_subject(folder: Path) -> Subject:
    chat = BackendChat.from_dir(folder, backend="trt")
    return Subject(
        chat,
        perplexity.backend_scorer(chat.backend),
        chat.tokenizer,
        option_scoring.sequential_options(chat.backend),
        {"plan": sha256_file(folder / "model.plan")},
    )


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

    def torch_stage(label: str, path: Path, load: Callable[[], Any], key: Callable[[], dict] | None) -> None:
        if torch_why:
            stages.append(Stage(label, path, None, torch_why))
        else:
            opener = lambda: _torch_subject(load(), base_of(run), key() if key else None)  # noqa: E731
            stages.append(Stage(label, path, opener))

    from orin_unlearn.train import models

    chain = adapter_chain(run)
    torch_stage(
        "base (torch fp32)",
        Path(base_name(run)),
        lambda: models.load_model(base_of(run)),
        lambda: models.identity(base_of(run)),
    )
    torch_stage(
        "adapter (torch fp32)",
        run / "adapter",
        lambda: models.load_unlearned(base_of(run), chain, "stack"),
        lambda: models.identity(base_of(run), chain),
    )
    torch_stage(
        "merged (torch fp32)",
        run / "adapter",
        lambda: models.load_unlearned(base_of(run), chain, "merge"),
        None,  # the same function as the adapter's up to rounding: measured, not looked up
    )
    merged = run / "export" / "merged"
    if (merged / MANIFEST).is_file():
        dtype = read_manifest(merged)["config"]["dtype"]
        short = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(dtype, dtype)
        torch_stage(
            f"merged (torch {short})",
            merged,
            lambda: models.load_model(merged, dtype),
            lambda: models.identity(merged, (), dtype),
        )
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


def onnx_identity(folder: Path) -> dict[str, str]:
    """What an ONNX stage's outputs depend on: its graph (and external weights) and tokenizer."""
    from orin_unlearn.edge.formats import sha256_dir

    return {
        "graph": sha256_dir(folder, "model.onnx*"),
        "tokenizer": sha256_dir(folder, "tokenizer*.json"),
        "template": sha256_dir(folder, "*.jinja"),
    }


def open_model(spec: str) -> Subject:
    """A model named on the command line, opened to be measured, its `identity` set (the sha256 of
    its weights and tokenizer, the key of cached results): an ONNX stage or an engine stage (the
    runtime), an adapter folder (its base with the adapter chain, torch), or a named base or
    checkpoint folder (torch, in the dtype its merged stage was cast to)."""
    from orin_unlearn.train import models

    folder = Path(spec)
    if (folder / "model.plan").is_file():
        return _engine_subject(folder)
    if (folder / "model.onnx").is_file():
        return _onnx_subject(folder)
    if (folder / "adapter_config.json").is_file():
        verify_stage(folder, allow_failed=True)
        config = read_manifest(folder)["config"]
        base = models.resolve_base(str(config["base"]))
        chain = [Path(p) for p in config.get("previous_adapters", [])] + [folder]
        return _torch_subject(models.load_unlearned(base, chain, "stack"), base, models.identity(base, chain))
    base = models.resolve_base(spec)
    verify_checkpoint(base)
    dtype = "float32"
    if (base / MANIFEST).is_file() and read_manifest(base)["stage"] == "merged":
        dtype = read_manifest(base)["config"]["dtype"]
    return _torch_subject(models.load_model(base, dtype), base, models.identity(base, (), dtype))

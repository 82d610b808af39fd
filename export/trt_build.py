"""Build, load and refit the decoder's TensorRT engine (TensorRT 10.x, as shipped on JetPack 6.2).

The build runs on the device that will serve the engine, because a plan is tied to its GPU and
TensorRT version. tensorrt is imported only inside functions, so this module imports anywhere;
without TensorRT the command still prints the equivalent trtexec line, then exits with status 3.

    orin-unlearn export engine --onnx runs/demo/export/onnx-fp16/model.onnx --out runs/demo/engine \
        --max-prompt 512 --timing-cache ~/.cache/orin-unlearn/timing.cache
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from orin_unlearn.edge import engine_manifest
from orin_unlearn.edge.engine_manifest import PLAN
from orin_unlearn.edge.formats import stage_dir
from orin_unlearn.edge.trt_engine import (
    EngineBuildError,
    TensorRTUnavailableError,
    load_engine,
    require_tensorrt,
)
from orin_unlearn.export import trt_profiles
from orin_unlearn.export.trt_profiles import DecoderShape

log = logging.getLogger(__name__)
EXIT_NO_TENSORRT = 3


def build_engine(
    onnx_path: str | Path,
    out_dir: str | Path,
    shape: DecoderShape,
    max_prompt: int | None,
    timing_cache_path: str | Path | None = None,
    refit: bool = False,
    workspace_gb: float = 2.0,
    batch: int = 1,
) -> Path:
    """Parse `onnx_path`, build a strongly typed engine with the prefill and decode profiles
    (prompts up to `max_prompt` tokens; None means min(512, max context)), and write
    `out_dir/model.plan` and its manifest; the folder is replaced atomically.

    The timing cache at `timing_cache_path` is read when present and saved after the build.
    Raises TensorRTUnavailableError without TensorRT, EngineBuildError when TensorRT rejects the
    graph or the build, and ValueError for bad sizes or a graph whose inputs do not fit `shape`.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX graph {onnx_path} does not exist")
    if workspace_gb <= 0:
        raise ValueError(f"workspace_gb must be > 0, got {workspace_gb}")
    profiles = trt_profiles.decoder_profiles(shape, max_prompt, batch)
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(f"  {parser.get_error(i)}" for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    trt_profiles.check_input_names([network.get_input(i).name for i in range(network.num_inputs)], shape)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if refit:
        config.set_flag(trt.BuilderFlag.REFIT)
    for spec in profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in spec.shapes().items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    cache_path = Path(timing_cache_path) if timing_cache_path is not None else None
    cached = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(cached)
    config.set_timing_cache(cache, ignore_mismatch=False)
    log.info("building %s (%d profiles, refit=%s); this takes minutes", onnx_path, len(profiles), refit)
    started = time.monotonic()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path}; see its errors above")
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        engine_manifest.write_bytes_atomic(cache_path, cache.serialize())
    settings = {
        "max_prompt": profiles[0].seq[2],
        "batch": batch,
        "shape": asdict(shape),
        "refit": refit,
        "workspace_gb": workspace_gb,
        "timing_cache": str(cache_path) if cache_path is not None else None,
        "build_seconds": round(time.monotonic() - started, 1),
        "profiles": [spec.as_dict() for spec in profiles],
    }
    with stage_dir(out_dir) as tmp:
        engine_manifest.write_bytes_atomic(tmp / PLAN, plan)
        engine_manifest.stamp(tmp, onnx_path, engine_manifest.device_info(), settings)
    return Path(out_dir)


def refit_engine(engine_dir: str | Path, weights: dict[str, np.ndarray]) -> list[str]:
    """Replace named weights of a refittable engine and save the refitted plan in place.

    Warning: building with BuilderFlag.REFIT can itself change the outputs: TensorRT may drop a
    GEMM bias, treat it as zero, and not expose it to the refit API (a documented known issue;
    REFIT_IDENTICAL avoids it but only accepts the build-time weights). Qwen2 has q/k/v
    projection biases, so callers must validate the engine against the ONNX graph after a refit
    before serving it.

    Args:
        engine_dir: an engine stage built with refit=True.
        weights: {ONNX initializer name: array with the original shape and dtype}.

    Returns:
        The refitted weight names, sorted.
    """
    engine_dir = Path(engine_dir)
    loaded = load_engine(engine_dir)
    if not loaded.manifest.get("config", {}).get("refit"):
        raise ValueError(f"{engine_dir} was built without refit; rebuild it with --refit")
    trt = require_tensorrt(runtime_only=True)
    refitter = trt.Refitter(loaded.engine, trt.Logger(trt.Logger.WARNING))
    unknown = sorted(set(weights) - set(refitter.get_all_weights()))
    if unknown:
        raise ValueError(f"{len(unknown)} weights are not refittable in this engine, e.g. {unknown[:5]}")
    arrays = {name: np.ascontiguousarray(a) for name, a in weights.items()}  # must outlive the refit
    rejected = [n for n, a in arrays.items() if not refitter.set_named_weights(n, trt.Weights(a))]
    if rejected:
        first = arrays[rejected[0]]
        raise EngineBuildError(
            f"TensorRT rejected weights {rejected[:5]} (first: {first.shape} {first.dtype})"
        )
    missing = refitter.get_missing_weights()
    if missing:
        raise EngineBuildError(f"the refit also needs {len(missing)} weights, e.g. {list(missing)[:5]}")
    if not refitter.refit_cuda_engine():
        raise EngineBuildError(f"TensorRT could not refit {engine_dir / PLAN}; see its errors above")
    engine_manifest.write_bytes_atomic(engine_dir / PLAN, loaded.engine.serialize())
    engine_manifest.record_refit(engine_dir, loaded.manifest, len(weights))
    return sorted(weights)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn export engine", description=__doc__)
    parser.add_argument("--onnx", required=True, help="decoder graph (with past key/values)")
    parser.add_argument("--out", required=True, help="engine stage folder to write (replaced atomically)")
    parser.add_argument("--config", help="Hugging Face config.json (default: next to --onnx)")
    parser.add_argument("--max-prompt", type=int, help="longest prompt (default min(512, context))")
    parser.add_argument("--max-context", type=int, help="cap on prompt + answer tokens")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--timing-cache", help="timing cache file to reuse and update")
    parser.add_argument("--refit", action="store_true", help="build a refittable engine")
    parser.add_argument("--workspace-gb", type=float, default=2.0)
    parser.add_argument("--print-trtexec", action="store_true", help="only print the trtexec line")
    args = parser.parse_args(argv)
    config_path = Path(args.config) if args.config else Path(args.onnx).with_name("config.json")
    try:
        shape = DecoderShape.from_config(json.loads(config_path.read_text()), args.max_context)
        profiles = trt_profiles.decoder_profiles(shape, args.max_prompt, args.batch)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    common = (args.timing_cache, args.refit, args.workspace_gb)
    cmd = trt_profiles.trtexec_command(args.onnx, Path(args.out) / PLAN, profiles, *common)
    print(f"equivalent trtexec command:\n{trt_profiles.format_command(cmd)}")
    if args.print_trtexec:
        return 0
    try:
        out = build_engine(args.onnx, args.out, shape, args.max_prompt, *common, batch=args.batch)
    except TensorRTUnavailableError as e:
        print(e, file=sys.stderr)
        return EXIT_NO_TENSORRT
    except (OSError, ValueError, EngineBuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, EngineBuildError) else 2
    print(f"engine written to {out / PLAN}")
    return 0

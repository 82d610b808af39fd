"""Build and load the decoder's TensorRT engine (TensorRT 10.x, as shipped on JetPack 6.2).

The build runs on the device that will serve the engine, because a plan is tied to its GPU and
TensorRT version. tensorrt is imported only inside functions, so this module imports anywhere;
without TensorRT the command still prints the equivalent trtexec line, then exits with status 3.

On a Jetson the build is first checked against MemAvailable (`edge/device/memory_budget.py`: about 3.5x
the graph's weights) and refused with exit status 6 when the module cannot hold it;
`--no-memory-check` skips that. Off a Jetson there is no check: a discrete GPU builds in its own
memory, which /proc/meminfo does not see. The timing cache (TensorRT's measured kernel timings)
is kept between builds in `default_timing_cache()` (~/.cache/orin-unlearn/tensorrt-timing.cache)
unless `--timing-cache` names another file or `--no-timing-cache` is given. The engine folder gets the graph's tokenizer and config files
too, so `orin-unlearn serve --model ENGINE_DIR` finds everything in one place.

    orin-unlearn export engine --onnx runs/demo/export/onnx-fp16/model.onnx --out runs/demo/engine \
        --max-prompt 512 [--timing-cache ~/.cache/orin-unlearn/tensorrt-timing.cache] [--no-memory-check]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from orin_unlearn.edge.device import engine_manifest, memory_budget, preflight
from orin_unlearn.edge.device.engine_manifest import PLAN
from orin_unlearn.edge.errors import EXIT_FAILED
from orin_unlearn.edge.formats import KIOSK, refuse_foreign, stage_dir
from orin_unlearn.edge.trt_engine import (
    EngineBuildError,
    require_tensorrt,
)
from orin_unlearn.export import trt_profiles
from orin_unlearn.export.trt_profiles import DecoderShape

log = logging.getLogger(__name__)
# Copied from the graph's folder next to the plan: what the runtime reads besides the weights.
SERVING_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    KIOSK,
)


def default_timing_cache() -> Path:
    """$XDG_CACHE_HOME/orin-unlearn/tensorrt-timing.cache (~/.cache when XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "orin-unlearn" / "tensorrt-timing.cache"


def copy_serving_files(source: Path, dest: Path) -> list[str]:
    """Copy the SERVING_FILES that `source` has into `dest`; returns their names."""
    copied = [name for name in SERVING_FILES if (source / name).is_file()]
    for name in copied:
        shutil.copy2(source / name, dest / name)
    return copied


def graph_bytes(onnx_path: str | Path) -> int:
    """Bytes of an ONNX graph's weights on disk: the file plus its external data (`<name>_data`)."""
    onnx_path = Path(onnx_path)
    external = onnx_path.with_name(onnx_path.name + "_data")
    return onnx_path.stat().st_size + (external.stat().st_size if external.is_file() else 0)


def check_build_memory(onnx_path: str | Path, system_root: str | Path = "/") -> memory_budget.Need | None:
    """On a Jetson, raise MemoryBudgetError when MemAvailable cannot hold the build of `onnx_path`;
    return the estimate. Off a Jetson return None (see the module docstring)."""
    available = preflight.jetson_memory_available(system_root)
    if available is None:
        return None
    need = memory_budget.build_need(graph_bytes(onnx_path))
    memory_budget.check(need, available, str(onnx_path), "--no-memory-check")
    log.info(
        "-[✓] memory: the build needs about %s, MemAvailable is %s",
        memory_budget.gib(need.total_bytes),
        memory_budget.gib(available),
    )
    return need


def build_engine(
    onnx_path: str | Path,
    out_dir: str | Path,
    shape: DecoderShape,
    max_prompt: int | None,
    timing_cache_path: str | Path | None = None,
    refit: bool = False,
    workspace_gb: float = 2.0,
    batch: int = 1,
    memory_check: bool = True,
    system_root: str | Path = "/",
) -> Path:
    """Parse `onnx_path`, build a strongly typed engine with the prefill and decode profiles
    (prompts up to `max_prompt` tokens; None means min(512, max context)), and write
    `out_dir/model.plan` and its manifest; the folder is replaced atomically.

    The timing cache at `timing_cache_path` is read when present and saved after the build.
    With `memory_check`, `check_build_memory` runs first (on a Jetson: MemAvailable read from
    `system_root`/proc/meminfo). Raises TensorRTUnavailableError without TensorRT, MemoryBudgetError
    when the module cannot hold the build, EngineBuildError when TensorRT rejects the graph or the
    build, and ValueError for bad sizes or a graph whose inputs do not fit `shape`.
    """
    refuse_foreign(out_dir, "engine")  # before minutes of building; checked again when replaced
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX graph {onnx_path} does not exist")
    if workspace_gb <= 0:
        raise ValueError(f"workspace_gb must be > 0, got {workspace_gb}")
    profiles = trt_profiles.decoder_profiles(shape, max_prompt, batch)
    if memory_check:
        check_build_memory(onnx_path, system_root)
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
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # made by another device/TensorRT
        log.warning("ignoring the timing cache %s: it does not match this device", cache_path)
        cache = config.create_timing_cache(b"")
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
    with stage_dir(out_dir, "engine") as tmp:
        engine_manifest.write_bytes_atomic(tmp / PLAN, plan)
        copy_serving_files(onnx_path.parent, tmp)
        engine_manifest.stamp(tmp, onnx_path, engine_manifest.device_info(), settings)
    return Path(out_dir)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn export engine", description=__doc__)
    parser.add_argument("--onnx", required=True, help="decoder graph (with past key/values)")
    parser.add_argument("--out", required=True, help="engine stage folder to write (replaced atomically)")
    parser.add_argument("--config", help="Hugging Face config.json (default: next to --onnx)")
    parser.add_argument("--max-prompt", type=int, help="longest prompt (default min(512, context))")
    parser.add_argument("--max-context", type=int, help="cap on prompt + answer tokens")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--timing-cache", help=f"timing cache file to reuse and update (default {default_timing_cache()})"
    )
    parser.add_argument("--no-timing-cache", action="store_true", help="build without a timing cache")
    parser.add_argument(
        "--no-memory-check", action="store_true", help="build even when MemAvailable looks too small"
    )
    parser.add_argument("--refit", action="store_true", help="build a refittable engine")
    parser.add_argument("--workspace-gb", type=float, default=2.0)
    parser.add_argument("--print-trtexec", action="store_true", help="only print the trtexec line")
    args = parser.parse_args(argv)
    preflight.warn_on_device()
    config_path = Path(args.config) if args.config else Path(args.onnx).with_name("config.json")
    shape = DecoderShape.from_config(json.loads(config_path.read_text()), args.max_context)
    profiles = trt_profiles.decoder_profiles(shape, args.max_prompt, args.batch)
    timing_cache = None if args.no_timing_cache else (args.timing_cache or str(default_timing_cache()))
    common = (timing_cache, args.refit, args.workspace_gb)
    cmd = trt_profiles.trtexec_command(args.onnx, Path(args.out) / PLAN, profiles, *common)
    print(f"equivalent trtexec command:\n{trt_profiles.format_command(cmd)}")
    if args.print_trtexec:
        return 0
    try:
        out = build_engine(
            args.onnx,
            args.out,
            shape,
            args.max_prompt,
            *common,
            batch=args.batch,
            memory_check=not args.no_memory_check,
        )
    except EngineBuildError as e:  # the command ran and TensorRT said no: a failed build, not bad input
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"engine written to {out / PLAN}")
    return 0

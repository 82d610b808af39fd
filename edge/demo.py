"""`orin-unlearn demo`: the main job end to end, on the embedded default or a real model.

Forgets the film "Inception" from the shipped tiny recommender (or from `--base`): world prompts,
base quality, unlearning, the four analyses of where the concept lives and whether it moved,
export (merged, fp32 / fp16 / int8 / int4 ONNX, each measured against the adapter; the TensorRT
engine where TensorRT is), the quality table of every stage, the runtime answering kiosk
questions, latency and robustness benchmarks, report. Writes runs/demo/report.md and report.json.

    orin-unlearn demo [--out runs/demo] [--concept Inception]
    orin-unlearn demo --base smollm2 --out runs/smollm2           # SmolLM2-135M-Instruct, offline
    orin-unlearn demo --base path/to/hf_checkpoint --config my.yaml --out runs/mine

A real base (anything but `tiny`) is measured without the tiny world model's base-quality bars,
on fewer prompts (`--limit`), and its run leaves out the stability analysis (minutes of greedy
replies on a CPU; the summary names the command). The unlearning config comes from `--config` (a
named base has a default one); its concept is replaced by `--concept`, its base by `--base`.
A missed unlearning bar or export gate is a failed stage: the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from orin_unlearn.edge import demo_stages
from orin_unlearn.edge.demo_stages import Plan

T = TypeVar("T")
log = logging.getLogger(__name__)
# named bases -> their unlearning config, inside the installed `train` package
DEFAULT_CONFIGS = {
    "tiny": "configs/demo_tiny.yaml",
    "smollm2": "configs/smollm2-135m-instruct_inception.yaml",
}
LIMITS = {"tiny": 500, "real": 100}  # base-quality prompts per set (SmolLM2: ~0.25 s a prompt, 2 cores)


def plan(base: str | None, config: str | None, limit: int | None) -> Plan:
    """The demo's base and config from the command line; ValueError (one line) when they do not
    make a run: an unknown base, a base without a default config and no --config, a missing file."""
    from importlib import resources

    from orin_unlearn.edge.adapters import resolve_base

    if config is None:
        name = base or "tiny"
        if name not in DEFAULT_CONFIGS:
            raise ValueError(
                f"--base {name!r} has no default unlearning config: give --config PATH "
                f"(defaults exist for {', '.join(DEFAULT_CONFIGS)})"
            )
        path = Path(str(resources.files("orin_unlearn.train").joinpath(DEFAULT_CONFIGS[name])))
    else:
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"--config {config}: no such file")
    if base is None:  # the config's own base
        import yaml

        base = str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("base", "tiny"))
    resolved = resolve_base(base)  # ValueError for an unknown base; converts smollm2 on first use
    if base not in DEFAULT_CONFIGS:  # a directory: absolute, so the run's manifests resolve anywhere
        base = str(resolved.resolve())
    tiny = base == "tiny"
    return Plan(base, path, tiny, limit if limit is not None else LIMITS["tiny" if tiny else "real"])


class Timer:
    """Calls a stage function and keeps its wall time under the function's name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: Callable[..., T], *args: Any) -> T:
        start = time.time()
        try:
            return stage(*args)
        finally:
            self.seconds[stage.__name__] = round(time.time() - start, 1)


def main(argv: list[str]) -> int:
    from orin_unlearn.benchmarks.world import DEFAULT_CONCEPT

    parser = argparse.ArgumentParser(
        prog="orin-unlearn demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/demo", help="run directory")
    parser.add_argument("--concept", default=DEFAULT_CONCEPT, help="film title or director to forget")
    parser.add_argument(
        "--base",
        help=f"base model: {', '.join(DEFAULT_CONFIGS)} or a checkpoint directory (default: the "
        "config's base; tiny without --config)",
    )
    parser.add_argument(
        "--config",
        help="unlearning config YAML (default for tiny: train/configs/demo_tiny.yaml, for smollm2: "
        "train/configs/smollm2-135m-instruct_inception.yaml; needed for any other base)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        help=f"prompts sampled per base-quality set (default {LIMITS['tiny']}; {LIMITS['real']} for a real model)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also train LUNAR, an unmasked LoRA and every weight (about 5 more minutes on tiny)",
    )
    args = parser.parse_args(argv)
    try:
        setup = plan(args.base, args.config, args.limit)
    except (ImportError, OSError, ValueError) as e:  # ImportError: smollm2's GGUF package is missing
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_demo(Path(args.out), args.concept, setup, args.compare)


def _served(timed: Timer, name: str, run: Path) -> tuple[dict, dict | None]:
    """(row, section) of a stage that serves the fp16 graph: skipped when the runtime would refuse
    the graph, failed (with the error) when it raised, so the report is still written."""
    label = demo_stages.SERVED[name]
    why = demo_stages.unservable(run)
    if why:
        return {"stage": label, "status": "skipped", "reason": why, "note": why}, None
    try:
        return timed(getattr(demo_stages, name), run)
    except Exception as e:  # one broken benchmark must not hide the others' results, nor the report
        log.exception("demo stage %s failed", label)
        reason = f"{type(e).__name__}: {e}"
        return {"stage": label, "status": "failed", "reason": reason, "note": reason}, None


def run_demo(run: Path, concept: str, setup: Plan, compare: bool = False) -> int:
    """Every stage in order, then the report; 0 when no stage failed (a missed bar or gate is a failure)."""
    from orin_unlearn.benchmarks import quality_bench
    from orin_unlearn.benchmarks.report import print_summary, write_report

    start = time.time()
    timed = Timer()
    stages = [timed(demo_stages.world, run, concept), timed(demo_stages.base_quality, run, concept, setup)]
    unlearn_stages, sections = timed(demo_stages.unlearn, run, concept, setup, compare)
    stages += unlearn_stages
    analysis_row, analysis_sections = timed(demo_stages.analysis, run, setup)
    stages.append(analysis_row)
    sections += analysis_sections
    stages += timed(demo_stages.export, run, setup.base)
    quality, quality_row, quality_section = timed(demo_stages.quality, run)
    stages.append(quality_row)
    sections.insert(0, quality_section)
    served = {name: _served(timed, name, run) for name in ("kiosk", "latency", "robustness")}
    stages += [served[name][0] for name in ("kiosk", "latency", "robustness")]
    sections += [served[name][1] for name in ("robustness", "latency", "kiosk") if served[name][1]]
    summary = {
        "run": run.name,
        "concept": concept,
        "wall_s": round(time.time() - start, 1),
        "stage_seconds": timed.seconds,
        "stages": stages,
        "sections": sections,
    }
    if not setup.tiny:
        summary["base"] = setup.base
        summary["config"] = str(setup.config)
    md, js = write_report(run, summary)
    print_summary(summary)
    quality_bench.print_table(quality)
    print(f"report: {md} {js}")
    print(json.dumps(summary))
    return 0 if all(s["status"] != "failed" for s in stages) else 1

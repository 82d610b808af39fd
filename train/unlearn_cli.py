"""`orin-unlearn unlearn`: run the activation-guided masked LoRA recipe, or one of its stages.

    orin-unlearn unlearn --config train/configs/demo_tiny.yaml --out runs/demo
    orin-unlearn unlearn probe --config train/configs/demo_tiny.yaml --out runs/demo
    orin-unlearn unlearn train --config train/configs/demo_tiny.yaml --out runs/demo steps=50 method=lora
    orin-unlearn unlearn --config train/configs/demo_tiny_lunar.yaml --out runs/lunar lunar.steps=200
    orin-unlearn unlearn sweep --config train/configs/demo_tiny.yaml --out runs/sweep --budgets 16,64,all

Stages: probe (activation statistics), score (saliency, Fisher, contrast), mask (layers and
neurons), train (the configured method; the adapter, saved with its manifest); `compare` also
trains every other registered method (LUNAR, an unmasked LoRA, every weight as the published
notebooks did) on the same data and prints them all; `sweep` trains the masked and the unmasked
LoRA (or --methods) with less and less retain data (train/unlearn/sweep.py) and writes sweep.json,
sweep.md and sweep.png. Each reuses what earlier stages left in the run directory. The last stdout
line is the whole result as one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STAGES = ("probe", "score", "mask", "train", "compare", "sweep")


def _ints(text: str) -> tuple[int, ...]:
    """Comma-separated counts, "all" meaning 0: "16,64,all" -> (16, 64, 0)."""
    try:
        return tuple(0 if v.strip() == "all" else int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers (or 'all'), got {text!r}"
        ) from None


def main(argv: list[str]) -> int:
    from orin_unlearn.train.unlearn import config, losses, methods
    from orin_unlearn.train.unlearn.sweep import BUDGETS, DEFAULT_METHODS

    stage = "train"
    if argv and argv[0] in STAGES:
        stage, argv = argv[0], argv[1:]
    parser = argparse.ArgumentParser(
        prog="orin-unlearn unlearn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"methods (method=...): {', '.join(methods.METHODS)}; "
        f"loss terms (losses=[...]): {', '.join(sorted(losses.LOSSES))}",
    )
    parser.add_argument("--config", default=None, help="YAML values for UnlearnConfig")
    parser.add_argument("--out", default="runs/unlearn", help="run directory")
    parser.add_argument(
        "--catalogue", help="your film list (.json or .csv); the same as the override catalogue=PATH"
    )
    parser.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS), help="sweep: registered methods to train"
    )
    parser.add_argument(
        "--budgets",
        type=_ints,
        default=BUDGETS,
        help="sweep: retain prompts per point ('all' = every one)",
    )
    parser.add_argument("--seeds", type=_ints, default=(0,), help="sweep: seeds per point")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    overrides = [*args.overrides, *([f"catalogue={args.catalogue}"] if args.catalogue else [])]
    cfg = config.load(args.config, overrides)
    from orin_unlearn.train.unlearn.evaluate import print_before_after
    from orin_unlearn.train.unlearn.recipe import run_unlearning

    if stage == "sweep":
        return _sweep(cfg, args)
    if stage == "compare":
        from orin_unlearn.edge.formats import MANIFEST, read_manifest
        from orin_unlearn.train.unlearn.compare import compare, markdown, print_compare

        # the run's own masked LoRA (`orin-unlearn unlearn` before) is reused, not retrained
        adapter = Path(args.out) / "adapter"
        saved = read_manifest(adapter) if (adapter / MANIFEST).is_file() else None
        same = saved is not None and saved["config"].get("concept") == cfg.concept
        summary = compare(cfg, args.out, masked=saved["results"] if same else None)
        print_compare(summary)
        (Path(args.out) / "compare.md").write_text(markdown(summary) + "\n", encoding="utf-8")
        print(json.dumps(summary))
        return 0
    results = run_unlearning(cfg, args.out, until=stage)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under `accelerate launch`, one process reports
        return 0
    if stage == "train":
        print_before_after(results)
    print(json.dumps(results, default=str))
    return 0 if results.get("ok", True) else 1


def _sweep(cfg, args) -> int:
    from orin_unlearn.benchmarks import plots
    from orin_unlearn.train.unlearn import sweep

    result = sweep.sweep(cfg, args.out, tuple(args.methods.split(",")), args.budgets, args.seeds)
    text = sweep.markdown(result)
    (Path(args.out) / "sweep.md").write_text(text + "\n", encoding="utf-8")
    plots.draw(sweep.plot, result, Path(args.out) / "sweep.png")
    print(text)
    print(json.dumps(result["table"]))
    return 0

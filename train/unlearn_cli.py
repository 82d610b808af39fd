"""`orin-unlearn unlearn`: run the activation-guided masked LoRA recipe, or one of its stages.

    orin-unlearn unlearn --config train/configs/demo_tiny.yaml --out runs/demo
    orin-unlearn unlearn probe --config train/configs/demo_tiny.yaml --out runs/demo
    orin-unlearn unlearn train --config train/configs/demo_tiny.yaml --out runs/demo steps=50 method=lora

Stages: probe (activation statistics), score (saliency, Fisher, contrast), mask (layers and
neurons), train (the adapter, saved with its manifest); `compare` also trains an unmasked LoRA
and every weight (as the published notebooks did) on the same data and prints the three. Each reuses what earlier stages left in
the run directory. The last stdout line is the whole result as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

from orin_unlearn.edge.config import load_config
from orin_unlearn.edge.errors import ConfigError

STAGES = ("probe", "score", "mask", "train", "compare")


def main(argv: list[str]) -> int:
    from orin_unlearn.benchmarks.world import UnknownConceptError
    from orin_unlearn.edge.adapters import AdapterMismatchError
    from orin_unlearn.train.unlearn.config import UnlearnConfig

    stage = "train"
    if argv and argv[0] in STAGES:
        stage, argv = argv[0], argv[1:]
    parser = argparse.ArgumentParser(
        prog="orin-unlearn unlearn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=None, help="YAML values for UnlearnConfig")
    parser.add_argument("--out", default="runs/unlearn", help="run directory")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(UnlearnConfig, args.config, args.overrides)
        from orin_unlearn.train.unlearn.evaluate import print_before_after
        from orin_unlearn.train.unlearn.recipe import run_unlearning

        if stage == "compare":
            from orin_unlearn.train.unlearn.compare import compare, print_compare

            summary = compare(cfg, args.out)
            print_compare(summary)
            print(json.dumps(summary))
            return 0
        results = run_unlearning(cfg, args.out, until=stage)
    except (ConfigError, UnknownConceptError, AdapterMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if stage == "train":
        print_before_after(results)
    print(json.dumps(results, default=str))
    return 0

"""`orin-unlearn world build-base`: regenerate the demo world's tokenizer and tiny base model.

orin-unlearn world build-base --out benchmarks/world/tiny_base
orin-unlearn world build-base --out /tmp/smoke steps=20 --no-measure
orin-unlearn world build-base --catalogue my_films.csv --out runs/my_base     # a base on your list
"""

from __future__ import annotations

import argparse
import json

from orin_unlearn.edge.config import load_config
from orin_unlearn.train.base_recipe import BaseConfig, build_base


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn world build-base", description=__doc__)
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--config", default=None, help="YAML file of BaseConfig values")
    parser.add_argument(
        "--catalogue", help="your film list (.json or .csv); the same as the override catalogue=PATH"
    )
    parser.add_argument("--no-measure", action="store_true", help="skip the quality measurement")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of BaseConfig")
    args = parser.parse_args(argv)
    overrides = [*args.overrides, *([f"catalogue={args.catalogue}"] if args.catalogue else [])]
    cfg = load_config(BaseConfig, args.config, overrides)
    summary = build_base(args.out, cfg, measure=not args.no_measure)
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k != "quality"}
            | {"ok": summary.get("quality", {}).get("ok")}
        )
    )
    return 0

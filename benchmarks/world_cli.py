"""`orin-unlearn world prompts`: write the exact prompts of a concept's split to a folder.

orin-unlearn world prompts --concept Inception --out runs/demo/world
orin-unlearn world prompts --catalogue my_films.csv --concept "Some Title" --out runs/mine/world
orin-unlearn world prompts --concept "Zephyr drones" --forget-prompts forget.jsonl \
    --retain-prompts retain.jsonl --out runs/zephyr/world
"""

from __future__ import annotations

import argparse

from orin_unlearn.benchmarks.world import DEFAULT_CONCEPT
from orin_unlearn.benchmarks.world.stage import write_world

__all__ = ["main", "write_world"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn world prompts", description=__doc__)
    parser.add_argument("--concept", default=DEFAULT_CONCEPT, help="film title or director to forget")
    parser.add_argument("--out", required=True, help="folder to write (replaced atomically)")
    parser.add_argument(
        "--catalogue", help="your film list: .json in the shipped schema, or .csv (default: the shipped one)"
    )
    parser.add_argument(
        "--forget-prompts", help="your own forget set (JSONL), for a concept outside any catalogue"
    )
    parser.add_argument(
        "--retain-prompts", help="with --forget-prompts: the prompts to keep answering (JSONL)"
    )
    parser.add_argument(
        "--neighbour-prompts", help="with --forget-prompts: close prompts to keep (JSONL, optional)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the seed of the train / held-out draw of your own prompts"
    )
    args = parser.parse_args(argv)
    own = {"forget": args.forget_prompts, "retain": args.retain_prompts, "neighbour": args.neighbour_prompts}
    own_files = own if any(own.values()) else None
    results = write_world(args.out, args.concept, args.catalogue, own_files, args.seed)
    for name, n in results["prompts"].items():
        print(f"{name:<20} {n:>6}")
    return 0

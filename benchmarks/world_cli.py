"""`orin-unlearn world prompts`: write the exact prompts of a concept's split to a folder.

orin-unlearn world prompts --concept Inception --out runs/demo/world
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
    args = parser.parse_args(argv)
    results = write_world(args.out, args.concept)
    for name, n in results["prompts"].items():
        print(f"{name:<20} {n:>6}")
    return 0

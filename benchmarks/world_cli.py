"""`orin-unlearn world prompts`: write the exact prompts of a concept's split to a folder.

orin-unlearn world prompts --concept Inception --out runs/demo/world
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orin_unlearn.benchmarks.world import (
    DEFAULT_CONCEPT,
    SETS,
    UnknownConceptError,
    build_prompts,
    load_catalogue,
    split_prompts,
    write_jsonl,
)
from orin_unlearn.edge.formats import make_manifest, sha256_file, stage_dir, write_manifest


def write_world(out: str | Path, concept: str) -> dict:
    """Write forget/neighbour/retain (train templates) and heldout_* (held-out templates) JSONL."""
    catalogue = load_catalogue()
    splits = split_prompts(build_prompts(catalogue), catalogue, concept)
    counts: dict[str, int] = {}
    with stage_dir(out) as tmp:
        for name in SETS:
            for split, prefix in (("train", ""), ("heldout", "heldout_")):
                prompts = splits.get(name, split)
                write_jsonl(prompts, tmp / f"{prefix}{name}.jsonl")
                counts[f"{prefix}{name}"] = len(prompts)
        inputs = {p.name: sha256_file(p) for p in sorted(tmp.glob("*.jsonl"))}
        results = {
            "concept": splits.concept.name,
            "kind": splits.concept.kind,
            "films": len(catalogue),
            "prompts": counts,
        }
        write_manifest(tmp, make_manifest("world", inputs, {"concept": concept}, results, True))
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn world prompts", description=__doc__)
    parser.add_argument("--concept", default=DEFAULT_CONCEPT, help="film title or director to forget")
    parser.add_argument("--out", required=True, help="folder to write (replaced atomically)")
    args = parser.parse_args(argv)
    try:
        results = write_world(args.out, args.concept)
    except UnknownConceptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, n in results["prompts"].items():
        print(f"{name:<20} {n:>6}")
    return 0

"""`orin-unlearn world items`: write a concept's item bank (multiple-choice questions) to a folder.

The bank is what `orin-unlearn bench knowledge` ranks (benchmarks/world/items.py): forget items
about the concept (split T / V by fact), neighbour items in the same templates about the films
close to it, retain items about other films, control items about a film nobody knows. A world
stage (`orin-unlearn world prompts`) holds the same bank; this writes one on its own.

    orin-unlearn world items --concept Inception --out runs/bank
    orin-unlearn world items --catalogue my_films.csv --concept "Some Title" --out runs/my_bank
    orin-unlearn world items --concept "Zephyr X200" --forget-prompts forget.jsonl \\
        --retain-prompts retain.jsonl --out runs/zephyr_bank
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orin_unlearn.benchmarks.world import DEFAULT_CONCEPT, load_catalogue
from orin_unlearn.benchmarks.world.items import ITEMS, write_items
from orin_unlearn.benchmarks.world.items import counts as item_counts
from orin_unlearn.benchmarks.world.stage import ITEMS_STAGE, build_bank, sources
from orin_unlearn.edge.formats import make_manifest, sha256_file, stage_dir, write_manifest


def write_bank(
    out: str | Path,
    concept: str,
    catalogue_path: str | Path | None = None,
    own: dict[str, str | Path] | None = None,
    seed: int = 0,
) -> dict:
    """Write `out/items.jsonl` and its manifest (an "items" stage); returns the manifest's results."""
    if own and catalogue_path:
        raise ValueError("give a catalogue or your own prompt files, not both")
    catalogue = None if own else load_catalogue(catalogue_path)
    bank = build_bank(concept, catalogue, own, seed)
    with stage_dir(out, ITEMS_STAGE) as tmp:
        write_items(bank, tmp / ITEMS)
        results = {
            "concept": concept,
            "items": item_counts(bank),
            "items_sha256": sha256_file(tmp / ITEMS),
            **sources(catalogue_path, own, seed),
        }
        config = {
            "concept": concept,
            "catalogue": str(catalogue_path) if catalogue_path else None,
            "seed": seed,
        }
        write_manifest(
            tmp, make_manifest(ITEMS_STAGE, {ITEMS: results["items_sha256"]}, config, results, True)
        )
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="orin-unlearn world items",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--concept", default=DEFAULT_CONCEPT, help="film title or director (or your concept)")
    parser.add_argument("--out", required=True, help="folder to write (an empty one, or an earlier bank)")
    parser.add_argument("--catalogue", help="your film list: .json or .csv (default: the shipped one)")
    parser.add_argument(
        "--forget-prompts", help="your own forget set (JSONL), for a concept outside any catalogue"
    )
    parser.add_argument("--retain-prompts", help="with --forget-prompts: the prompts to keep (JSONL)")
    parser.add_argument("--neighbour-prompts", help="with --forget-prompts: close prompts to keep (JSONL)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the draws (templates, distractors)")
    args = parser.parse_args(argv)
    own = {"forget": args.forget_prompts, "retain": args.retain_prompts, "neighbour": args.neighbour_prompts}
    if any(own.values()) and not args.forget_prompts:
        raise ValueError("--retain-prompts and --neighbour-prompts need --forget-prompts")
    results = write_bank(
        args.out, args.concept, args.catalogue, own if any(own.values()) else None, args.seed
    )
    for name, n in results["items"].items():
        print(f"{name:<12} {n:>6}")
    return 0

"""The world stage of a run directory: the exact prompts of a concept's split, as JSONL files.

RUN/world/ holds forget / neighbour / retain (train templates) and heldout_forget /
heldout_neighbour / heldout_retain (held-out templates), one `Prompt` a line, the item bank
(items.jsonl, `items.py`: what the knowledge scorer ranks; its sha256 in the manifest), the
catalogue they were built from (catalogue.json: the shipped one or the operator's, its source's
sha256 in the manifest), and a manifest. It is written once (`orin-unlearn world prompts`, or the unlearn recipe on a fresh run); every
later stage reads its prompts back from it, so what a run trained and measured on is what its
files say, not what the catalogue and templates would generate today.

    write_world("runs/demo/world", "Inception")
    splits = load_world("runs/demo")                      # the same `Splits`, in the same order
    sets = heldout_sets(splits, seed, max_prompts)        # the evaluation sets of the run
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from orin_unlearn.benchmarks.world.catalogue import (
    Catalogue,
    CatalogueError,
    Concept,
    catalogue_sha256,
    load_catalogue,
)
from orin_unlearn.benchmarks.world.items import ITEMS, Item, build_items, read_items, write_items
from orin_unlearn.benchmarks.world.items import counts as item_counts
from orin_unlearn.benchmarks.world.own import HELDOUT_FRACTION, own_concept, own_splits
from orin_unlearn.benchmarks.world.own_items import own_items
from orin_unlearn.benchmarks.world.prompts import Prompt, build_prompts, read_jsonl, write_jsonl
from orin_unlearn.benchmarks.world.splits import SETS, Splits, split_prompts
from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import (
    TMP_MARK,
    make_manifest,
    sha256_file,
    stage_dir,
    verify_stage,
    write_json_atomic,
    write_manifest,
)

log = logging.getLogger(__name__)

WORLD = "world"
ITEMS_STAGE = "items"  # a bank written on its own (`orin-unlearn world items`)
CATALOGUE = "catalogue.json"
MIN_FORGET_PROMPTS = 20  # fewer cannot be split into a train set and a held-out set worth measuring


class MissingWorldError(ManifestError):
    """A run directory without its world stage: nothing to read the prompts from."""


def world_dir(run: str | Path) -> Path:
    return Path(run) / WORLD


def build_splits(concept: Concept | str, catalogue: Catalogue | None = None) -> Splits:
    """The split the world stage writes for `concept`, built in memory from the catalogue and
    templates. Only for writing the stage, and for tools given no run directory."""
    catalogue = load_catalogue() if catalogue is None else catalogue
    return split_prompts(build_prompts(catalogue), catalogue, concept)


def check_splits(splits: Splits) -> list[str]:
    """Refuse a concept too thin to split (CatalogueError); the warnings worth recording."""
    forget = len(splits.forget)
    if (
        forget < MIN_FORGET_PROMPTS
        or not splits.get("forget", "train")
        or not splits.get("forget", "heldout")
    ):
        raise CatalogueError(
            f"{splits.concept.name!r} has {forget} prompt(s) about it; at least {MIN_FORGET_PROMPTS}, "
            "both train and held-out, are needed to train on some and measure on the others"
        )
    warnings = []
    if not splits.neighbour:
        why = (
            "no neighbour prompts were given"
            if splits.concept.kind == "own"
            else "no film of the catalogue shares a director or a theme with it"
        )
        warnings.append(f"{splits.concept.name!r}: {why}, so neighbour accuracy cannot be measured")
    for warning in warnings:
        log.warning(warning)
    return warnings


def sources(catalogue_path: str | Path | None, own: dict[str, str | Path] | None, seed: int) -> dict:
    """What a world is built from, as its manifest records it (and `check_sources` compares)."""
    if own:
        files = {
            name: {"source": str(path), "sha256": sha256_file(path)} for name, path in own.items() if path
        }
        return {"own": files, "split": {"seed": seed, "heldout_fraction": HELDOUT_FRACTION}}
    source = str(catalogue_path) if catalogue_path else "shipped"
    return {"catalogue": {"source": source, "sha256": catalogue_sha256(catalogue_path)}}


def write_world(
    out: str | Path,
    concept: str,
    catalogue_path: str | Path | None = None,
    own: dict[str, str | Path] | None = None,
    seed: int = 0,
) -> dict:
    """Write forget/neighbour/retain (train templates) and heldout_* (held-out templates) JSONL,
    the catalogue (`catalogue_path`, default the shipped one) and the stage's manifest into
    `out` (replaced atomically); returns the manifest's results. With `own` ({"forget",
    "retain", "neighbour"?: JSONL paths}) the sets are your own prompts, split by `seed`."""
    if own and catalogue_path:
        raise CatalogueError("give a catalogue or your own prompt files, not both")
    if own:
        splits, catalogue = own_splits(concept, own, seed), None
    else:
        catalogue = load_catalogue(catalogue_path)
        splits = build_splits(concept, catalogue)
    warnings = check_splits(splits)
    bank = build_bank(concept, catalogue, own, seed)
    counts: dict[str, int] = {}
    with stage_dir(out, WORLD) as tmp:
        if catalogue is not None:
            write_json_atomic(tmp / CATALOGUE, catalogue.to_json())
        write_items(bank, tmp / ITEMS)
        for name in SETS:
            for split, prefix in (("train", ""), ("heldout", "heldout_")):
                prompts = splits.get(name, split)
                write_jsonl(prompts, tmp / f"{prefix}{name}.jsonl")
                counts[f"{prefix}{name}"] = len(prompts)
        inputs = {p.name: sha256_file(p) for p in sorted(tmp.glob("*.jsonl"))}
        results = {
            "items": item_counts(bank),
            "items_sha256": inputs[ITEMS],
            "concept": splits.concept.name,
            "kind": splits.concept.kind,
            "films": len(splits.catalogue),
            **sources(catalogue_path, own, seed),
            "prompts": counts,
            "warnings": warnings,
            # each set's train (t) and held-out (h) templates in generated order, which the two
            # files alone lose: relearning and the stability analysis sample from the whole set
            "order": {
                name: "".join("h" if p.split == "heldout" else "t" for p in splits.get(name)) for name in SETS
            },
        }
        config = {"concept": concept, "catalogue": str(catalogue_path) if catalogue_path else None}
        config |= {"own": {k: str(v) for k, v in own.items() if v}, "seed": seed} if own else {}
        write_manifest(tmp, make_manifest(WORLD, inputs, config, results, True))
    return results


def build_bank(
    concept: str, catalogue: Catalogue | None, own: dict[str, str | Path] | None, seed: int
) -> list[Item]:
    """The item bank of a world: from your own prompt files, else from the catalogue."""
    if own:
        return own_items(own_concept(concept).name, own, seed)
    return build_items(catalogue, catalogue.concept(concept), seed)


def load_items(folder: str | Path) -> tuple[list[Item], str]:
    """(items, sha256 of the items file) of a world stage or an items stage, verified first."""
    folder = Path(folder)
    if (folder / WORLD / ITEMS).is_file():  # a run directory: its world stage
        folder = folder / WORLD
    manifest = verify_stage(folder)
    if (
        manifest is None
        or manifest.get("stage") not in (WORLD, ITEMS_STAGE)
        or not (folder / ITEMS).is_file()
    ):
        raise ManifestError(
            f"{folder} holds no item bank: write one with `orin-unlearn world items --concept C --out DIR` "
            "(a world stage written by `orin-unlearn world prompts` holds one too)"
        )
    return read_items(folder / ITEMS), sha256_file(folder / ITEMS)


def load_world(run: str | Path, concept: str | None = None) -> Splits:
    """The `Splits` the world stage of `run` holds, with every prompt in the order it was written
    (so `heldout_sets(splits, seed, n)` draws exactly the prompts it drew when it was written).

    Raises MissingWorldError when `run` has no world stage, ManifestError when its files differ
    from its manifest (an edit is accepted once the manifest is written again), a prompt sits in
    the file of the other template split, or `concept` is given and is not the world's concept.
    """
    folder = world_dir(run)
    if not folder.is_dir():
        raise MissingWorldError(
            f"{run} has no world stage ({folder} is missing): write it with "
            f"`orin-unlearn world prompts --concept C --out {folder}`"
        )
    manifest = verify_stage(folder)
    if manifest is None or manifest.get("stage") != WORLD:  # None: unreadable, under --trust-unverified
        raise ManifestError(
            f"{folder} is not a world stage: write it again with `orin-unlearn world prompts`"
        )
    if manifest["results"].get("kind") == "own":
        world_concept, catalogue = own_concept(manifest["results"]["concept"]), Catalogue([])
    else:  # a world written before catalogues were stored was built from the shipped one
        catalogue = load_catalogue(folder / CATALOGUE if (folder / CATALOGUE).is_file() else None)
        world_concept = catalogue.concept(manifest["results"]["concept"])
    if concept is not None and _name(concept, catalogue, world_concept) != world_concept.name:
        raise ManifestError(
            f"{folder} holds the prompts of {world_concept.name!r}, not of {concept!r}: "
            f"use another run directory, or rewrite it with `orin-unlearn world prompts --concept "
            f"{json.dumps(concept)} --out {folder}`"
        )
    order = manifest["results"].get("order")
    if order is None:
        raise ManifestError(
            f"{folder} was written by an older version: write it again with `orin-unlearn world prompts`"
        )
    sets = [_interleave(folder, name, order[name]) for name in SETS]
    return Splits(world_concept, *sets, catalogue)


def _name(concept: str, catalogue: Catalogue, world_concept: Concept) -> str:
    """`concept` as the world would name it (own concepts: as given, compared case-blind)."""
    if world_concept.kind == "own":
        return world_concept.name if concept.strip().casefold() == world_concept.name.casefold() else concept
    return catalogue.concept(concept).name


def check_sources(
    run: str | Path, catalogue_path: str | Path | None, own: dict[str, str | Path] | None, seed: int
) -> None:
    """Refuse a run whose world was built from other files than these (a catalogue given, or
    your own prompt files and split seed)."""
    folder = world_dir(run)
    recorded = (verify_stage(folder) or {}).get("results", {})
    wanted = sources(catalogue_path, own, seed)
    if own:  # the same bytes split the same way; where the files lie may differ
        digests = [
            ({k: v["sha256"] for k, v in r.get("own", {}).items()}, r.get("split"))
            for r in (recorded, wanted)
        ]
        same = digests[0] == digests[1]
    else:
        same = (
            recorded.get("catalogue", {}).get("sha256", catalogue_sha256()) == wanted["catalogue"]["sha256"]
        )
    if not same:
        given = ", ".join(str(p) for p in (own or {}).values() if p) if own else str(catalogue_path)
        raise ManifestError(
            f"{folder} was built from other files than {given}: use another run directory, or "
            f"rewrite it with `orin-unlearn world prompts ... --out {folder}`"
        )


def ensure_world(
    run: str | Path,
    concept: str,
    catalogue_path: str | Path | None = None,
    own: dict[str, str | Path] | None = None,
    seed: int = 0,
) -> Splits:
    """`load_world(run, concept)`, writing RUN/world for `concept` (from `catalogue_path`, default
    the shipped catalogue, or from your `own` prompt files split by `seed`) first when the run has
    none, so a recipe started on a fresh run directory still has one source for its prompts. A run
    whose world was built from other files than those given is refused."""
    final = world_dir(run)
    if final.exists() and (catalogue_path or own):
        check_sources(run, catalogue_path, own, seed)
    if not final.exists():
        log.info("%s has no world stage: writing the prompts of %r", run, concept)
        # written aside, then renamed only if still absent: the processes of `accelerate launch`
        # all start on the same fresh run, and a reader must never see the folder replaced
        staging = final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")
        write_world(staging, concept, catalogue_path, own, seed)
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(staging)  # another process wrote it first
    return load_world(run, concept)


def _read(folder: Path, name: str, split: str) -> list[Prompt]:
    path = folder / f"{'heldout_' if split == 'heldout' else ''}{name}.jsonl"
    try:
        prompts = read_jsonl(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ManifestError(f"{path} is not a file of prompts: {type(e).__name__}: {e}") from None
    wrong = next((n for n, p in enumerate(prompts, 1) if p.split != split), None)
    if wrong is not None:
        raise ManifestError(f"{path}:{wrong} is a {prompts[wrong - 1].split!r} prompt in the {split!r} file")
    return prompts


def _interleave(folder: Path, name: str, order: str) -> tuple[Prompt, ...]:
    """The set's train and held-out prompts merged back into the order the manifest records."""
    files = {"t": iter(_read(folder, name, "train")), "h": iter(_read(folder, name, "heldout"))}
    prompts = tuple(next(files[kind], None) for kind in order)
    if None in prompts or any(next(rest, None) is not None for rest in files.values()):
        raise ManifestError(f"{folder}: the {name} files do not hold the prompts its manifest counts")
    return prompts  # type: ignore[return-value]

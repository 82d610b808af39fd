"""The demo world: a real film catalogue, prompt families generated from it, and concept splits.

Nothing is downloaded: the catalogue, templates and the tiny base model trained on them ship
with this package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from orin_unlearn.benchmarks.world.catalogue import (
    Catalogue,
    CatalogueError,
    Concept,
    Film,
    UnknownConceptError,
    load_catalogue,
)
from orin_unlearn.benchmarks.world.prompts import (
    Prompt,
    build_prompts,
    load_templates,
    read_jsonl,
    write_jsonl,
)
from orin_unlearn.benchmarks.world.splits import SETS, Splits, heldout_sets, split_prompts
from orin_unlearn.benchmarks.world.stage import (
    MissingWorldError,
    build_splits,
    ensure_world,
    load_world,
    world_dir,
    write_world,
)

DEFAULT_CONCEPT = "Inception"


def tiny_base_dir() -> Path:
    """Directory of the shipped tiny base model (a Hugging Face checkpoint with tokenizer)."""
    return Path(str(resources.files(__package__).joinpath("tiny_base")))


__all__ = [
    "DEFAULT_CONCEPT",
    "SETS",
    "Catalogue",
    "CatalogueError",
    "Concept",
    "Film",
    "MissingWorldError",
    "Prompt",
    "Splits",
    "UnknownConceptError",
    "build_prompts",
    "build_splits",
    "ensure_world",
    "heldout_sets",
    "load_catalogue",
    "load_world",
    "load_templates",
    "read_jsonl",
    "split_prompts",
    "tiny_base_dir",
    "world_dir",
    "write_jsonl",
    "write_world",
]

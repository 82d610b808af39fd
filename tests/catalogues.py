"""A user's own catalogue as the tests write it: real films of the shipped list, as CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from orin_unlearn.benchmarks.world import Film, load_catalogue
from orin_unlearn.benchmarks.world.catalogue import COLUMNS


def forty_films(nolan: int = 3) -> list[Film]:
    """40 real films: `nolan` of Christopher Nolan's (Memento among them), then other directors'."""
    films = load_catalogue().films
    own = [f for f in films if f.director == "Christopher Nolan"][:nolan]
    return own + [f for f in films if f.director != "Christopher Nolan"][: 40 - nolan]


def write_csv(path: Path, films: list[Film]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for f in films:
            writer.writerow(
                [
                    f.title,
                    f.year,
                    f.director,
                    ";".join(f.genres),
                    ";".join(f.themes),
                    f.lead,
                    ";".join(f.aliases),
                ]
            )
    return path

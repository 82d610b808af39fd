"""A cache of results that depend only on their inputs: converted bases, and the scores and
greedy replies of a model on a fixed set of questions, keyed by the sha256 of the model's weights
and of the questions. A real base's measurements take minutes on a CPU; keyed by what they were
computed from, they are computed once, whatever run or stage asks again.

Files live under `$ORIN_UNLEARN_CACHE` (default ~/.cache/orin-unlearn), one JSON file per key;
a file whose recorded key differs (a hash collision of the short name) is recomputed. A map
(`cached_map` / `update_map`) is one file of entries under one key, e.g. a model's greedy reply per
question: any stage that asks a question the model already answered reads the reply back.

    scores = cached_json("knowledge", {"model": digest, "items": items}, lambda: score(...))
    known = cached_map("replies", {"model": digest})              # {question digest: reply}
    update_map("replies", {"model": digest}, {digest_of_new_question: reply})
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orin_unlearn.edge.formats import write_json_atomic

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """`$ORIN_UNLEARN_CACHE`, default ~/.cache/orin-unlearn."""
    return Path(os.environ.get("ORIN_UNLEARN_CACHE") or Path.home() / ".cache" / "orin-unlearn")


def key_digest(key: Any) -> str:
    """The sha256 of a JSON-able key, written canonically (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _path(kind: str, digest: str) -> Path:
    return cache_root() / kind / f"{digest[:24]}.json"


def store_json(kind: str, key: Any, value: Any) -> None:
    """Store `value` for `key` (a result computed elsewhere, e.g. during training)."""
    digest = key_digest(key)
    write_json_atomic(_path(kind, digest), {"key": digest, "value": value})


def cached_map(kind: str, key: Any) -> dict[str, Any]:
    """The entries stored under `key` (empty when none are)."""
    digest = key_digest(key)
    stored = _read(_path(kind, digest))
    if isinstance(stored, dict) and stored.get("key") == digest and isinstance(stored.get("value"), dict):
        return stored["value"]
    return {}


def update_map(kind: str, key: Any, entries: dict[str, Any]) -> None:
    """Add `entries` to the map under `key`, merged with what the file holds now (another process
    may have added its own since it was read); written atomically."""
    if entries:
        store_json(kind, key, cached_map(kind, key) | entries)


def _read(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def cached_json(kind: str, key: Any, compute: Callable[[], Any]) -> Any:
    """`compute()`'s JSON-able result for `key`, read from the cache when it holds it, else
    computed and stored (atomically, so a killed run never leaves half a file)."""
    digest = key_digest(key)
    path = _path(kind, digest)
    stored = _read(path)
    if isinstance(stored, dict) and stored.get("key") == digest:
        log.info("%s reused from the cache (%s)", kind, path)
        return stored["value"]
    value = compute()
    store_json(kind, key, value)
    return value

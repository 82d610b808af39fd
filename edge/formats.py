"""Run-directory layout, stage manifests and atomic stage writes.

Every stage folder has a `manifest.json` (stage, creation time, sha256 of inputs, library
versions, config, results, `ok`). A stage is written into a temporary sibling and renamed into
place, so a crash never leaves a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from orin_unlearn.edge.errors import ManifestError

MANIFEST = "manifest.json"
TRACKED_LIBRARIES = (
    "orin-unlearn",
    "numpy",
    "tokenizers",
    "onnxruntime",
    "torch",
    "transformers",
    "peft",
    "onnx",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: str | Path, pattern: str = "*") -> str:
    """One hash over the relative names and contents of the files under `path` matching `pattern`."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob(pattern) if p.is_file() and p.name != MANIFEST):
        h.update(str(f.relative_to(root)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder (made if missing), fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def stage_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to `final` (replacing an old one).

    On an exception the temporary folder is removed and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def make_manifest(stage: str, inputs: dict[str, str], config: dict | None, results: dict, ok: bool) -> dict:
    return {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": inputs,
        "versions": versions(),
        "argv": sys.argv,
        "config": config or {},
        "results": results,
        "ok": ok,
    }


def read_manifest(stage_path: str | Path) -> dict:
    path = Path(stage_path) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{stage_path} has no {MANIFEST}: the stage is missing or did not finish")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for key in ("stage", "inputs", "results", "ok"):
        if key not in manifest:
            raise ManifestError(f"{path} lacks the key {key!r}")
    return manifest

"""What a bundle is made of, checked before anything is written: the index `bundle.json`, its
signature member, and how an unpacked bundle is told apart from a folder of someone's files.

`bundle.json` is the tar's first member: the stages and the size and sha256 of every file, each
under one stage folder. `bundle.json.sig`, when the bundle is signed, is the second member: an
Ed25519 signature over the exact bytes of the first (edge/device/keys.py). Unpacking writes both next
to the stages, so a folder holding a `bundle.json` that lists every other file in it is an
earlier bundle of ours, which unpacking may replace; anything else there is refused.

    orin-unlearn bundle --unpack kiosk.tar --into /opt/orin-unlearn/demo
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from orin_unlearn.edge.errors import BundleError
from orin_unlearn.edge.formats import MANIFEST

INDEX = "bundle.json"
SIGNATURE = "bundle.json.sig"
MAX_INDEX_BYTES = 16 << 20  # an index lists a few hundred files at most
MAX_SIGNATURE_BYTES = 64 << 10
_SHA256 = re.compile(r"[0-9a-f]{64}")


def safe_name(name: object) -> bool:
    """A relative POSIX path inside the bundle: no absolute path, no `..`, no empty part."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and path.as_posix() == name and name != "."


def parse_index(data: bytes, where: str) -> dict[str, Any]:
    """The index in `data` (the bytes of `where`) after checking its shape.

    Raises BundleError naming `where` and the problem: not a JSON object, `files` not a
    non-empty object, no stages, an entry without an integer size or a sha256, a file outside every stage,
    a stage without its manifest.
    """
    try:
        index = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(index, dict):
        raise BundleError(f"{where} is not a JSON object but {type(index).__name__}")
    stages, files = index.get("stages"), index.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(
            f"{where}: 'files' is {json.dumps(files)[:60]}, not an object of name: {{size, sha256}}"
        )
    if not isinstance(stages, list) or not stages or not all(safe_name(s) for s in stages):
        raise BundleError(
            f"{where}: 'stages' is {json.dumps(stages)[:60]}, not a list of relative folder names"
        )
    if len(set(stages)) != len(stages) or any(
        a != b and b.startswith(f"{a}/") for a in stages for b in stages
    ):
        raise BundleError(f"{where}: 'stages' {stages} repeats or nests a folder")
    for name, entry in files.items():
        if not safe_name(name) or not any(name.startswith(f"{s}/") for s in stages):
            raise BundleError(f"{where}: file {name!r} is not a relative path inside one of the stages")
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: the entry of {name} is {json.dumps(entry)}, not {{size, sha256}}")
        size, digest = entry.get("size"), entry.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleError(f"{where}: {name} has size {json.dumps(size)}, not a byte count")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BundleError(f"{where}: {name} has sha256 {json.dumps(digest)}, not 64 hex digits")
    for stage in stages:
        if f"{stage}/{MANIFEST}" not in files:
            raise BundleError(f"{where}: stage {stage} has no {MANIFEST} listed")
    return index


def total_bytes(index: dict[str, Any]) -> int:
    return sum(entry["size"] for entry in index["files"].values())


def foreign_entries(folder: str | Path) -> tuple[list[str], str]:
    """What in `folder` did not come from a bundle (relative names, sorted), and why.

    An empty or absent folder has none. An earlier bundle is `bundle.json` (readable, valid),
    `bundle.json.sig`, the files it lists and their parent folders; any other file, folder or
    link is foreign, and so is everything when `bundle.json` is missing or unreadable.
    """
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise BundleError(f"{folder} is not a folder")
    if not folder.exists() or not any(folder.iterdir()):
        return [], ""
    files: set[str] = set()
    reason = ""
    try:
        data = (folder / INDEX).read_bytes()
        files = set(parse_index(data, str(folder / INDEX))["files"]) | {INDEX, SIGNATURE}
    except FileNotFoundError:
        reason = f"no {INDEX}"
    except (OSError, BundleError) as e:
        reason = str(e)
    folders = {p.as_posix() for name in files for p in PurePosixPath(name).parents} - {"."}
    foreign: list[str] = []
    for root, dirs, names in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in list(dirs):
            path = (rel / name).as_posix()
            if path not in folders or (Path(root) / name).is_symlink():
                foreign.append(f"{path}/")
                dirs.remove(name)  # do not list what is inside
        for name in names:
            path = (rel / name).as_posix()
            if path not in files or (Path(root) / name).is_symlink():
                foreign.append(path)
    return sorted(foreign), reason


def refuse_foreign(folder: str | Path) -> None:
    """Raise BundleError, in one line, when unpacking into `folder` would delete files that are
    not from an orin-unlearn bundle."""
    foreign, reason = foreign_entries(folder)
    if not foreign:
        return
    if len(foreign) == 1:
        noun, verb = ("folder" if foreign[0].endswith("/") else "file"), "is"
    else:
        noun, verb = ("entries" if any(n.endswith("/") for n in foreign) else "files"), "are"
    shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign) - 5} more)" if len(foreign) > 5 else "")
    why = f"; {reason}" if reason and reason != f"no {INDEX}" else ""
    raise BundleError(
        f"{folder} holds {len(foreign)} {noun} that {verb} "
        f"not from an orin-unlearn bundle ({shown}){why}; choose an empty folder"
    )

"""What a bundle is made of, checked before anything is written: the index `bundle.json`, its
signature member, and how an unpacked bundle is told apart from a folder of someone's files.

`bundle.json` is the tar's first member: the stages, the size and sha256 of every file, each
under one stage folder, and a version (a number that only grows: unpacking an older bundle over
a newer one is refused). `bundle.json.sig`, when the bundle is signed, is the second member: an
Ed25519 signature over the exact bytes of the first (edge/device/keys.py). Unpacking writes both next
to the stages, so a folder holding a `bundle.json` that lists every other file in it is an
earlier bundle of ours, which unpacking may replace; anything else there is refused.

    orin-unlearn bundle --unpack kiosk.tar --into /opt/orin-unlearn/demo
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from orin_unlearn.edge.device import keys
from orin_unlearn.edge.errors import BundleError
from orin_unlearn.edge.formats import MANIFEST

log = logging.getLogger(__name__)

INDEX = "bundle.json"
SIGNATURE = "bundle.json.sig"
MAX_INDEX_BYTES = 1 << 20  # an index lists a few hundred files, about 150 bytes each
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
    except RecursionError:
        raise BundleError(f"{where} nests too deeply to be an index") from None
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
    version = index.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BundleError(f"{where}: 'version' is {json.dumps(version)[:60]}, not a whole number >= 0")
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


def version_of(index: dict[str, Any]) -> int:
    """The bundle's version (0 for a bundle packed before versions existed)."""
    return int(index.get("version", 0))


def check_origin(
    where: Path, data: bytes, sig: bytes | None, trusted: Ed25519PublicKey | None, trusted_path: Path | None
) -> str | None:
    """The signer's key sha256 when `trusted` (read from `trusted_path`) vouches for `data`; None
    when no key is trusted. Raises BundleError for an unsigned or wrongly signed bundle (`where`: a
    bundle file or an unpacked folder), or a malformed signature."""
    name = f"{where}:{SIGNATURE}"
    if trusted is None:
        if sig is not None:
            keys.read_signature(sig, name)
        return None
    if sig is None:
        raise BundleError(f"{where} is not signed; refusing it under the trusted key {trusted_path}")
    return keys.verify(trusted, data, sig, name)


def warn_unverified(where: Path, sig: bytes | None) -> None:
    signed = "unsigned"
    if sig is not None:
        signed = f"signed by key {keys.read_signature(sig, str(where))['key_sha256'][:16]}, not checked"
    log.warning(
        "the origin of %s is NOT verified (%s; no --trust key, no $%s, no %s): "
        "checksums catch corruption, not tampering",
        where, signed, keys.TRUST_ENV, keys.INSTALLED_TRUST_KEY,
    )  # fmt: skip


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

"""Unpack a bundle onto the device, checking everything before it can be used or fill the disk.

    orin-unlearn bundle --unpack kiosk.tar[.gz] --into /opt/orin-unlearn/demo --trust kiosk.pub

In order: the trusted key is loaded; `--into` must be empty, absent or an earlier bundle (never
someone's files); the tar is read as a stream (plain, gz, bz2 or xz) with bounded memory
(`tar_stream`), the index first and its signature checked; the bundle must not be older than
the one it replaces; the index's total must fit `max_bytes` and the free disk; each member is
hashed as it is copied and stops at the size the index lists, so no file grows past what was
signed; every stage's manifest must then be ok and list exactly those files (`verify_stage`'s
checks, without hashing twice). Only then does the new folder replace the
old one (`stage_dir`: the old bundle stays until the new one is verified).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import lzma
import os
import shutil
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from orin_unlearn.edge.device import keys
from orin_unlearn.edge.device.bundle_index import (
    INDEX,
    MAX_INDEX_BYTES,
    MAX_SIGNATURE_BYTES,
    SIGNATURE,
    check_origin,
    foreign_entries,
    parse_index,
    refuse_foreign,
    safe_name,
    total_bytes,
    version_of,
    warn_unverified,
)
from orin_unlearn.edge.device.tar_stream import BoundedStream, BoundedTarInfo, body_bytes, head_bytes
from orin_unlearn.edge.errors import BundleError, ManifestError
from orin_unlearn.edge.formats import MANIFEST, clean_litter, read_manifest, stage_dir

DEFAULT_MAX_BYTES = 64 << 30
CHUNK = 1 << 20


@dataclass
class Unpacked:
    """What was unpacked: the verified index, and the signer's key sha256 (None: origin unverified)."""

    index: dict[str, Any]
    key_sha256: str | None


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, where: str) -> bytes:
    if not member.isfile() or member.size > limit:
        raise BundleError(f"{where} is not a regular file of at most {limit} bytes")
    src = tar.extractfile(member)
    if src is None:
        raise BundleError(f"{where} has no data")
    return src.read(limit + 1)


class _Budget:
    """Bytes that may still be written; raises before a write would pass the cap."""

    def __init__(self, bundle: Path, cap: int) -> None:
        self.bundle, self.cap, self.left = bundle, cap, cap

    def take(self, n: int) -> None:
        if n > self.left:
            raise BundleError(f"{self.bundle}: unpacking would write more than {self.cap} bytes; stopped")
        self.left -= n


def _copy(src: IO[bytes], target: Path, want: dict[str, Any], budget: _Budget, where: str) -> None:
    """Copy `src` to `target`, hashing as it goes; stop once it passes the listed size."""
    h, n = hashlib.sha256(), 0
    with open(target, "xb") as dst:
        while block := src.read(min(CHUNK, want["size"] - n + 1)):
            n += len(block)
            if n > want["size"]:
                raise BundleError(f"{where} is longer than the {want['size']} bytes {INDEX} lists")
            budget.take(len(block))
            h.update(block)
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    if n != want["size"] or h.hexdigest() != want["sha256"]:
        raise BundleError(f"{where} does not match its size and sha256 in {INDEX}: corrupt or altered bundle")


def _extract(
    bundle: Path, tar: tarfile.TarFile, members: Iterable[tarfile.TarInfo], index: dict, tmp: Path, cap: int
) -> None:
    expected, seen, budget = index["files"], set(), _Budget(bundle, cap)
    for member in members:
        where = f"{bundle}:{member.name}"
        if not member.isfile() or not safe_name(member.name):
            raise BundleError(f"{bundle}: refusing member {member.name!r} (not a plain, relative file)")
        if member.name not in expected or member.name in seen:
            raise BundleError(f"{where} is not listed in {INDEX} (or appears twice)")
        want = expected[member.name]
        if member.size != want["size"]:
            raise BundleError(f"{where} is {member.size} bytes in the tar but {INDEX} lists {want['size']}")
        target = tmp / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        if src is None:
            raise BundleError(f"{where} has no data")
        _copy(src, target, want, budget, where)
        seen.add(member.name)
    missing = sorted(set(expected) - seen)
    if missing:
        raise BundleError(f"{bundle} is partial: {len(missing)} listed file(s) missing, e.g. {missing[:3]}")


def _read_head(
    bundle: Path, tar: tarfile.TarFile, members: Iterator[tarfile.TarInfo]
) -> tuple[bytes, bytes | None, Iterator[tarfile.TarInfo]]:
    """The index's bytes, the signature's (None: unsigned), and the members after them."""
    first = next(members, None)
    if first is None or first.name != INDEX:
        raise BundleError(f"{bundle} has no {INDEX} first: not an orin-unlearn bundle")
    data = _read_small(tar, first, MAX_INDEX_BYTES, f"{bundle}:{INDEX}")
    second = next(members, None)
    if second is not None and second.name == SIGNATURE:
        return data, _read_small(tar, second, MAX_SIGNATURE_BYTES, f"{bundle}:{SIGNATURE}"), members
    return data, None, itertools.chain([second] if second is not None else [], members)


def check_stage_against_index(folder: Path, stage: str, index: dict[str, Any]) -> None:
    """`verify_stage` without hashing again: every file of the stage was just checked against the
    index, so its manifest must be ok and list exactly those files with the same size and sha256."""
    manifest = read_manifest(folder / stage)
    if manifest["ok"] is not True:
        raise ManifestError(f"refusing {folder / stage}: its manifest says ok: {json.dumps(manifest['ok'])}")
    indexed = {
        name[len(stage) + 1 :]: entry
        for name, entry in index["files"].items()
        if name.startswith(f"{stage}/") and name != f"{stage}/{MANIFEST}"
    }
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise ManifestError(f"refusing {folder / stage}: its {MANIFEST} lists no files to verify")
    root = folder / stage
    problems = [f"{root / n} is not listed in the manifest" for n in sorted(set(indexed) - set(listed))]
    problems += [f"{root / n} is missing" for n in sorted(set(listed) - set(indexed))]
    problems += [
        f"{root / n} does not match its sha256 in the manifest"
        for n in sorted(set(listed) & set(indexed))
        if not isinstance(listed[n], dict)
        or (listed[n].get("size"), listed[n].get("sha256")) != (indexed[n]["size"], indexed[n]["sha256"])
    ]
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ManifestError(f"refusing {root}: {problems[0]}{more}")


def installed_version(into: Path) -> int | None:
    """The version of the bundle unpacked in `into`, or None when it holds none (or an unreadable one)."""
    try:
        return version_of(parse_index((into / INDEX).read_bytes(), str(into / INDEX)))
    except (OSError, BundleError):
        return None


def check_version(bundle: Path, index: dict[str, Any], into: Path, allow_downgrade: bool) -> None:
    """Raise BundleError when `bundle` is older than the bundle already unpacked in `into`: an old,
    validly signed bundle (one from before the unlearning, say) must not replace a newer one."""
    new, old = version_of(index), installed_version(into)
    if old is not None and new < old and not allow_downgrade:
        raise BundleError(
            f"{bundle} is version {new}, older than version {old} unpacked in {into}; refusing the "
            "downgrade (--allow-downgrade installs it anyway)"
        )


def unpack(
    bundle: str | Path,
    into: str | Path,
    trust: str | Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_downgrade: bool = False,
) -> Unpacked:
    """Verify `bundle` and put its stages in `into`, replacing an earlier bundle there atomically.

    `trust` is the trusted public key (default: $ORIN_UNLEARN_TRUST_KEY, else the installed
    /etc/orin-unlearn/trusted.pub, else none: checksums only, with a warning). Until the signature
    is checked, at most the index, the signature and a few header blocks are read (`tar_stream`);
    after it, at most what the index lists plus header slack. Raises BundleError naming the file
    for a missing or malformed key, a target holding other files, an unreadable, truncated,
    unsigned, wrongly signed, oversized, corrupt or partial bundle, a header bomb, a bundle older
    than the one in `into` (unless `allow_downgrade`), or a stage that fails `verify_stage`;
    `into` is then left as it was.
    """
    bundle, into = Path(bundle), Path(into)
    trusted_path = keys.trusted_key_path(trust)
    # a missing or malformed key fails before anything is read or written
    trusted = keys.load_public_key(trusted_path) if trusted_path is not None else None
    if not bundle.is_file():
        raise BundleError(f"{bundle} does not exist or is not a file")
    clean_litter(into.parent)  # may put back an earlier bundle a killed unpack had moved aside
    refuse_foreign(into)
    try:
        with (
            BoundedStream(bundle, head_bytes(MAX_INDEX_BYTES, MAX_SIGNATURE_BYTES)) as stream,
            tarfile.open(str(bundle), "r|", fileobj=stream, tarinfo=BoundedTarInfo) as tar,
        ):
            members = iter(tar)
            data, sig, rest = _read_head(bundle, tar, members)
            signer = check_origin(bundle, data, sig, trusted, trusted_path)
            index = parse_index(data, f"{bundle}:{INDEX}")
            total = total_bytes(index)
            if total > max_bytes:
                raise BundleError(
                    f"{bundle}: {INDEX} lists {total} bytes, more than the cap of {max_bytes} (--max-bytes)"
                )
            check_version(bundle, index, into, allow_downgrade)
            stream.allow(body_bytes(total, len(index["files"])))
            into.parent.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(into.parent).free
            if total > free:
                raise BundleError(f"{bundle} needs {total} bytes; {into.parent} has {free} free")
            with stage_dir(into, lambda f: foreign_entries(f)[0]) as tmp:
                _extract(bundle, tar, rest, index, tmp, total)
                (tmp / INDEX).write_bytes(data)  # the exact signed bytes, for a later re-check
                if sig is not None:
                    (tmp / SIGNATURE).write_bytes(sig)
                for stage in index["stages"]:
                    try:
                        check_stage_against_index(tmp, stage, index)
                    except ManifestError as e:
                        raise BundleError(f"{bundle}: {str(e).replace(str(tmp), str(into))}") from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise BundleError(f"{bundle} cannot be read as a complete bundle: {e}") from None
    except OSError as e:
        raise BundleError(f"unpacking {bundle} into {into} failed: {e}") from None
    if signer is None:
        warn_unverified(bundle, sig)
    return Unpacked(index, signer)

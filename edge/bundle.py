"""`orin-unlearn bundle`: pack a run's deployable stages into one tar for the Jetson, and unpack
it with every file checked against its sha256.

    orin-unlearn bundle runs/demo --out kiosk.tar [--stage adapter --stage export/onnx-int4]
    orin-unlearn bundle --unpack kiosk.tar --into /opt/orin-unlearn/demo

Only stages whose manifest says ok are packed. `bundle.json` (first in the tar) lists every file
with its size and sha256; unpacking goes to a temporary sibling that is renamed into place only
after every file matched and no file is missing or extra, so a corrupt or partial bundle leaves
nothing behind that looks usable.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

from orin_unlearn.edge.formats import read_manifest, sha256_file, stage_dir

INDEX = "bundle.json"
DEFAULT_STAGES = ("adapter", "export/onnx-fp16")  # the adapter names the concept and its prompts


class BundleError(ValueError):
    """A bundle that is corrupt, partial, unsafe, or made of stages that failed their checks."""


def pack(
    run_dir: str | Path, out: str | Path, stages: tuple[str, ...] | list[str] = DEFAULT_STAGES
) -> dict[str, Any]:
    """Write `out` (a tar) holding `stages` of `run_dir` and the index; returns the index."""
    run_dir, out = Path(run_dir), Path(out)
    files: dict[str, dict[str, Any]] = {}
    for stage in stages:
        folder = run_dir / stage
        manifest = read_manifest(folder)  # ManifestError when missing or unfinished
        if not manifest["ok"]:
            raise BundleError(f"{folder} failed its checks (manifest ok: false); not packing it")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(run_dir).as_posix()
            files[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    index = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "stages": list(stages),
        "files": files,
    }
    data = json.dumps(index, indent=2).encode()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w") as tar:
            info = tarfile.TarInfo(INDEX)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for name in files:
                tar.add(run_dir / name, arcname=name, recursive=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return index


def _safe(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name not in ("", ".")


def unpack(bundle: str | Path, into: str | Path) -> dict[str, Any]:
    """Extract `bundle` into `into` (replaced atomically) after verifying every file; returns the index.

    Raises BundleError for an unreadable or truncated tar, a missing index, unsafe member names,
    links, missing, extra or altered files.
    """
    try:
        with tarfile.open(bundle, "r") as tar, stage_dir(into) as tmp:
            members = tar.getmembers()
            if not members or members[0].name != INDEX:
                raise BundleError(f"{bundle} has no {INDEX} first: not an orin-unlearn bundle")
            index = json.loads(tar.extractfile(members[0]).read())
            expected = index["files"]
            seen = set()
            for member in members[1:]:
                if not member.isfile() or not _safe(member.name):
                    raise BundleError(
                        f"{bundle}: refusing member {member.name!r} (not a plain, relative file)"
                    )
                if member.name not in expected:
                    raise BundleError(f"{bundle}: {member.name} is not listed in {INDEX}")
                target = tmp / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                want = expected[member.name]
                if target.stat().st_size != want["size"] or sha256_file(target) != want["sha256"]:
                    raise BundleError(f"{bundle}: {member.name} does not match its checksum: corrupt bundle")
                seen.add(member.name)
            missing = sorted(set(expected) - seen)
            if missing:
                raise BundleError(
                    f"{bundle} is partial: {len(missing)} listed files missing, e.g. {missing[:3]}"
                )
            (tmp / INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")
    except (tarfile.TarError, EOFError, OSError, json.JSONDecodeError, KeyError) as e:
        raise BundleError(f"{bundle} cannot be read as a complete bundle: {e}") from e
    return index


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn bundle", description=__doc__)
    parser.add_argument("run", nargs="?", help="run directory to pack")
    parser.add_argument("--out", help="tar file to write")
    parser.add_argument(
        "--stage", action="append", help=f"stage folder to pack (default {', '.join(DEFAULT_STAGES)})"
    )
    parser.add_argument("--unpack", help="bundle to verify and extract")
    parser.add_argument("--into", help="folder to extract into (replaced atomically)")
    args = parser.parse_args(argv)
    try:
        if args.unpack:
            if not args.into:
                parser.error("--unpack needs --into")
            index = unpack(args.unpack, args.into)
            print(f"verified {len(index['files'])} files into {args.into}")
        else:
            if not (args.run and args.out):
                parser.error("packing needs RUN_DIR and --out")
            index = pack(args.run, args.out, tuple(args.stage or DEFAULT_STAGES))
            print(f"packed {len(index['files'])} files of {', '.join(index['stages'])} into {args.out}")
    except ValueError as e:  # BundleError, ManifestError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

"""`orin-unlearn bundle`: pack a run's deployable stages into one tar for the Jetson, signed, and
unpack it there verified.

    orin-unlearn keys new --out ~/.config/orin-unlearn
    orin-unlearn bundle runs/demo --out kiosk.tar --sign ~/.config/orin-unlearn/kiosk.key \
        [--stage adapter --stage export/onnx-int4]
    orin-unlearn bundle --unpack kiosk.tar --into /opt/orin-unlearn/demo --trust kiosk.pub

Only stages that pass verification are packed (manifest ok, every file as measured, no links),
whatever the flags: `--trust-unverified` never lets a bundle carry an unverified stage.
`bundle.json` (first in the tar) lists every file with its size and sha256, and the bundle's
version (`--bundle-version`, default the packing time in seconds: a number that only grows, so
unpack refuses an older bundle unless `--allow-downgrade`); with `--sign` the second member,
`bundle.json.sig`, is an Ed25519 signature over the exact bytes of `bundle.json`. `OUT` ending in
.gz/.tgz, .bz2 or .xz is compressed. Unpacking is in edge/device/unpack.py; `--verify`, and what
ties a served folder or engine to the bundle, in edge/device/installed.py.

    orin-unlearn bundle --verify /opt/orin-unlearn/demo --model /opt/orin-unlearn/engine
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import tarfile
import time
from pathlib import Path
from typing import Any

from orin_unlearn.edge.device import keys
from orin_unlearn.edge.device.bundle_index import INDEX, SIGNATURE, parse_index, safe_name
from orin_unlearn.edge.device.installed import verify_installed
from orin_unlearn.edge.device.unpack import DEFAULT_MAX_BYTES, Unpacked, unpack
from orin_unlearn.edge.errors import BundleError, ManifestError
from orin_unlearn.edge.formats import (
    MANIFEST,
    TMP_MARK,
    clean_litter,
    read_manifest,
    sha256_file,
    stage_problems,
)

__all__ = ["INDEX", "SIGNATURE", "BundleError", "Unpacked", "main", "pack", "unpack"]

DEFAULT_STAGES = ("world", "adapter", "export/onnx-fp16")  # world: the prompts every later stage reads
_COMPRESSION = {".gz": "w:gz", ".tgz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(time.time()), 0o644
    return info


def _stage_files(run_dir: Path, stage: str) -> dict[str, dict[str, Any]]:
    """{name in the bundle: {size, sha256}} of a stage that passes verification; never under
    --trust-unverified (`stage_problems` directly, not `verify_stage`, which would only warn)."""
    folder = run_dir / stage
    try:
        manifest = read_manifest(folder)
        problems = stage_problems(folder, manifest)
    except ManifestError as e:
        raise BundleError(f"not packing {stage}: {e}") from None
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise BundleError(f"not packing {stage}: {problems[0]}{more}")
    files = {f"{stage}/{n}": {"size": e["size"], "sha256": e["sha256"]} for n, e in manifest["files"].items()}
    path = folder / MANIFEST
    files[f"{stage}/{MANIFEST}"] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return files


def pack(
    run_dir: str | Path,
    out: str | Path,
    stages: tuple[str, ...] | list[str] = DEFAULT_STAGES,
    sign: str | Path | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Write `out` (a tar) holding `stages` of `run_dir`, the index (with `version`, default the
    time in seconds) and, with `sign` (a private key file), its signature; returns the index.
    Raises BundleError naming the stage or file."""
    run_dir, out = Path(run_dir), Path(out)
    key = keys.load_private_key(sign) if sign else None  # a bad key fails before any hashing
    if not stages or not all(safe_name(s) for s in stages):
        raise BundleError(f"stages {list(stages)} must be relative folders of {run_dir}")
    files: dict[str, dict[str, Any]] = {}
    for stage in stages:
        files.update(_stage_files(run_dir, stage))
    index = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "version": int(time.time()) if version is None else version,
        "stages": list(stages),
        "files": files,
    }
    data = (json.dumps(index, indent=2) + "\n").encode()
    parse_index(data, INDEX)  # what unpack will demand (e.g. no nested stages)
    tmp = out.with_name(f".{out.name}{TMP_MARK}{os.getpid()}")
    clean_litter(out.parent)  # what a killed pack left
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, _COMPRESSION.get(out.suffix, "w")) as tar:
            tar.addfile(_member(INDEX, len(data)), io.BytesIO(data))
            if key is not None:
                sig = keys.sign(key, data)  # over exactly the bytes unpack reads
                tar.addfile(_member(SIGNATURE, len(sig)), io.BytesIO(sig))
            for name, entry in files.items():
                with open(run_dir / name, "rb") as fh:
                    tar.addfile(_member(name, entry["size"]), fh)
        os.replace(tmp, out)
    except OSError as e:
        raise BundleError(f"writing {out} failed: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return index


def parse_size(text: str) -> int:
    """Bytes in `text`: a number with an optional K, M, G or T suffix (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 500M or 64G")
    return int(match[1]) << (10 * " KMGT".index(match[2].upper() or " "))


def origin_of(done: Unpacked) -> str:
    return f"signed by key {done.key_sha256[:16]}" if done.key_sha256 else "origin NOT verified"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="orin-unlearn bundle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", nargs="?", help="run directory to pack")
    parser.add_argument("--out", help="tar file to write (.tar, .tar.gz, .tar.bz2, .tar.xz)")
    parser.add_argument(
        "--stage", action="append", help=f"stage folder to pack (default {', '.join(DEFAULT_STAGES)})"
    )
    parser.add_argument("--sign", help="private key (orin-unlearn keys new) to sign the bundle with")
    parser.add_argument("--unpack", help="bundle to verify and extract")
    parser.add_argument("--into", help="folder to extract into: empty, absent or an earlier bundle")
    parser.add_argument(
        "--verify", metavar="DIR", help="check an unpacked bundle again (signature under the trusted key, "
        "required; every sha256); the kiosk service runs this before each start"
    )  # fmt: skip
    parser.add_argument(
        "--model", help="with --verify: also check that this folder, given to `serve --model`, is covered by "
        "the bundle (one of its stages, or an engine built from its graph with its tokenizer and template)"
    )  # fmt: skip
    parser.add_argument(
        "--bundle-version", type=int, help="the version written into the index (default: the time in "
        "seconds); unpack refuses a bundle older than the one it would replace"
    )  # fmt: skip
    parser.add_argument(
        "--allow-downgrade", action="store_true", help="unpack a bundle older than the one in --into"
    )
    parser.add_argument(
        "--trust", help=f"public key the bundle must be signed by (default ${keys.TRUST_ENV}, then "
        f"{keys.INSTALLED_TRUST_KEY} if installed)"
    )  # fmt: skip
    parser.add_argument(
        "--max-bytes", type=parse_size, default=DEFAULT_MAX_BYTES,
        help="refuse a bundle that would write more than this (default 64G)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.model and not args.verify:
        parser.error("--model goes with --verify")
    if args.verify:
        done = verify_installed(args.verify, trust=args.trust, model=args.model)
        served = f"; {args.model} is covered by it" if args.model else ""
        print(f"verified {len(done.index['files'])} files in {args.verify} ({origin_of(done)}){served}")
    elif args.unpack:
        if not args.into:
            parser.error("--unpack needs --into")
        done = unpack(
            args.unpack, args.into, args.trust, max_bytes=args.max_bytes, allow_downgrade=args.allow_downgrade
        )
        print(f"verified {len(done.index['files'])} files into {args.into} ({origin_of(done)})")
    else:
        if not (args.run and args.out):
            parser.error("packing needs RUN_DIR and --out")
        index = pack(args.run, args.out, tuple(args.stage or DEFAULT_STAGES), args.sign, args.bundle_version)
        signed = "signed" if args.sign else "unsigned"
        print(
            f"packed {len(index['files'])} files of {', '.join(index['stages'])} into {args.out} ({signed})"
        )
    return 0

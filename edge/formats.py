"""Run-directory layout, stage manifests, verification before use, and atomic stage writes.

Every stage folder has a `manifest.json` (stage, creation time, sha256 of inputs, library
versions, config, results, `ok`, and the size and sha256 of every other file in the folder).
`verify_stage` checks all of that before a command uses the folder (serve, export, bench,
bundle), so what runs is exactly what was measured. A stage is written into a temporary sibling
named `.NAME.orin-tmp-PID` and renamed into place, so a crash never leaves a folder that looks
complete; `clean_litter` removes what a killed process left (called by every `stage_dir`).
A writer replaces only a folder that is empty or its own earlier stage: anything else (a typo
such as `--out ~`) is refused before a file is touched (`refuse_foreign`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import platform
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from orin_unlearn.edge.errors import ManifestError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# the kiosk page's mood and genre buttons for the catalogue a served stage was measured on
KIOSK = "kiosk.json"
TMP_MARK, OLD_MARK = ".orin-tmp-", ".orin-old-"  # temporary siblings: .NAME.orin-tmp-PID
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


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def clean_litter(parent: str | Path) -> list[Path]:
    """Remove the temporary siblings in `parent` left by processes that are gone; put back a
    stage whose replacement was killed between the two renames. Returns what was removed."""
    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for path in sorted(parent.iterdir()):
        for mark in (TMP_MARK, OLD_MARK):
            name, sep, pid = path.name.rpartition(mark)
            if not (sep and name.startswith(".") and pid.isdigit()) or _pid_alive(int(pid)):
                continue
            final = parent / name[1:]
            if mark == OLD_MARK and not final.exists():
                os.replace(path, final)  # killed after moving the old stage aside: restore it
                log.warning("restored %s from %s", final, path.name)
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    if removed:
        log.info("removed %d temporary folder(s) left by killed runs in %s", len(removed), parent)
    return removed


class ForeignFolderError(ManifestError):
    """A stage writer's `--out` that holds files the stage did not write: replacing it would lose them."""


def foreign_entries(folder: str | Path, kind: str) -> list[str]:
    """The entries of `folder` (relative names; folders end in "/") that a `kind` stage writer did
    not write: none when the folder is missing or empty; else every entry, unless its manifest
    names a stage matching `kind` (fnmatch), and then the files its manifest does not list. Links
    and anything that is not a plain file or folder are always foreign; nothing is followed."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        return [folder.name]
    if not folder.exists():
        return []
    try:
        manifest = read_manifest(folder)
        listed = manifest.get("files") if fnmatch.fnmatchcase(str(manifest["stage"]), kind) else None
    except ManifestError:
        listed = None
    listed = set(listed) if isinstance(listed, dict) else set()
    if listed:
        listed.add(MANIFEST)
    folders = {p.as_posix() for name in listed for p in PurePosixPath(name).parents} - {"."}
    foreign: list[str] = []
    for root, dirs, names in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in sorted(dirs):
            path = (rel / name).as_posix()
            if path not in folders or (Path(root) / name).is_symlink():
                foreign.append(f"{path}/")
                dirs.remove(name)  # what is inside is foreign too: named once, by its folder
        for name in sorted(names):
            path = (rel / name).as_posix()
            entry = Path(root) / name
            if path not in listed or entry.is_symlink() or not entry.is_file():
                foreign.append(path)
    return sorted(foreign)


def stages_only(folder: str | Path, parts: tuple[str, ...], files: tuple[str, ...] = ()) -> list[str]:
    """The entries of a folder of stages (an export: merged/, onnx-*/, gguf/ and export.json) that
    are neither one of `files` nor a stage of one of the `parts` kinds holding only its own files."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        return [folder.name]
    if not folder.exists():
        return []
    foreign: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.name in files and entry.is_file() and not entry.is_symlink():
            continue
        inner = [] if entry.is_dir() and not entry.is_symlink() else [entry.name]
        if not inner:
            kinds = [k for k in parts if not foreign_entries(entry, k)]
            inner = [] if kinds and any(entry.iterdir()) else [f"{entry.name}/"]
        foreign += inner
    return foreign


def refuse_foreign(folder: str | Path, owner: str | Callable[[Path], list[str]]) -> None:
    """Raise ForeignFolderError, in one line, when replacing `folder` would delete files a stage
    writer did not write; `folder` is not touched. `owner`: the stage name its manifest must give
    (fnmatch, e.g. "onnx-*"; see `foreign_entries`), or a function listing the foreign entries."""
    folder = Path(folder)
    foreign = owner(folder) if callable(owner) else foreign_entries(folder, owner)
    if not foreign:
        return
    shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign) - 5} more)" if len(foreign) > 5 else "")
    what = f"an orin-unlearn {owner} stage" if isinstance(owner, str) else "what this command writes"
    raise ForeignFolderError(
        f"{folder} holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} that "
        f"{'is' if len(foreign) == 1 else 'are'} not from {what} ({shown}); nothing was changed: "
        "choose an empty or new folder"
    )


@contextlib.contextmanager
def stage_dir(final: str | Path, owner: str | Callable[[Path], list[str]]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to `final` (replacing an old one).

    `final` must be missing, empty, or written by this kind of stage (`owner`: the manifest's stage
    name, or a function listing foreign entries); anything else is refused with
    ForeignFolderError before a file is touched, so a typo in `--out` never deletes a user's files.
    On an exception the temporary folder is removed and `final` is left as it was; after a kill
    the next `stage_dir` in the same parent cleans up (`clean_litter`).
    """
    final = Path(final)
    refuse_foreign(final, owner)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_litter(final.parent)
    tmp = final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        refuse_foreign(final, owner)  # a user's file may have landed there while the stage was built
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}{OLD_MARK}{os.getpid()}")
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


def file_index(folder: str | Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"size", "sha256"}} of every file under `folder` but the manifest."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != MANIFEST)
    return {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in files
    }


def write_manifest(folder: str | Path, manifest: dict) -> dict:
    """Write `folder/manifest.json` with the size and sha256 of every file now in `folder`.

    Call it last, when the folder holds everything it will hold: `verify_stage` refuses a
    stage whose files differ from this list.
    """
    manifest = dict(manifest, files=file_index(folder))
    write_json_atomic(Path(folder) / MANIFEST, manifest)
    return manifest


def read_manifest(stage_path: str | Path) -> dict:
    path = Path(stage_path) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{stage_path} has no {MANIFEST}: the stage is missing or did not finish")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} is not a JSON object")
    for key in ("stage", "inputs", "results", "ok"):
        if key not in manifest:
            raise ManifestError(f"{path} lacks the key {key!r}")
    return manifest


_trust_unverified = False


def trust_unverified(enabled: bool = True) -> None:
    """Let `verify_stage` warn instead of refuse, for this process (`--trust-unverified`)."""
    global _trust_unverified
    _trust_unverified = enabled


def trusting_unverified() -> bool:
    """Whether this process was told to use stages that fail verification (`--trust-unverified`);
    checks beyond `verify_stage` (a stage's bundle, an engine's graph) follow the same flag."""
    return _trust_unverified


def stage_entries(folder: Path, listed: Iterable[str]) -> tuple[dict[str, os.stat_result], dict[str, str]]:
    """({relative name: lstat} of the plain files under `folder` but the manifest, {relative name:
    its problem} of every other entry).

    Nothing is followed: a link (to a file or a folder, dangling or not), anything that is not a
    plain file or folder (a FIFO, a socket, a device), a file with more than one hard link
    (another name could change it after it was verified) and a folder that holds no listed
    file (empty or not) are problems, named once each.
    """
    folders = {p.as_posix() for name in listed for p in PurePosixPath(name).parents} - {"."}
    present: dict[str, os.stat_result] = {}
    problems: dict[str, str] = {}
    for root, dirs, names in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in sorted(dirs):
            path, entry = (rel / name).as_posix(), Path(root) / name
            if entry.is_symlink():
                problems[path] = f"{entry} is a link (verification never follows links)"
                dirs.remove(name)
            elif path not in folders:
                problems[path] = f"{entry}/ is a folder the manifest does not list"
                dirs.remove(name)  # one problem for the folder, not one per file inside
        for name in sorted(names):
            path, entry = (rel / name).as_posix(), Path(root) / name
            info = os.lstat(entry)
            if stat.S_ISLNK(info.st_mode):
                problems[path] = f"{entry} is a link (verification never follows links)"
            elif not stat.S_ISREG(info.st_mode):
                problems[path] = f"{entry} is not a regular file (a FIFO, socket or device)"
            elif info.st_nlink > 1:
                links = info.st_nlink
                problems[path] = f"{entry} has {links} hard links: another name could change it once verified"
            elif path != MANIFEST:
                present[path] = info
    return present, problems


def stage_problems(folder: str | Path, manifest: dict, allow_failed: bool = False) -> list[str]:
    """Why `folder` does not match `manifest`: `ok` not the boolean true (unless `allow_failed`),
    no file list, listed files missing, changed (size or sha256) or unlisted files present, and
    the links, special files, hard-linked files and unlisted folders `stage_entries` finds."""
    folder = Path(folder)
    problems = []
    if manifest["ok"] is not True and not allow_failed:
        problems.append(
            f"{folder / MANIFEST} says ok: {json.dumps(manifest['ok'])} (the stage failed its checks)"
        )
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return [
            *problems,
            f"{folder / MANIFEST} lists no files to verify (written by an older version: re-run the stage)",
        ]
    present, odd = stage_entries(folder, listed)
    problems += [odd[name] for name in sorted(odd)]
    for name in sorted(set(listed) - set(present)):
        if not any(name == o or name.startswith(f"{o}/") for o in odd):  # not named already
            problems.append(f"{folder / name} is missing")
    for name in sorted(set(present) - set(listed)):
        problems.append(f"{folder / name} is not listed in the manifest")
    for name in sorted(set(listed) & set(present)):
        path, want = folder / name, listed[name]
        if not isinstance(want, dict) or present[name].st_size != want.get("size"):
            problems.append(f"{path} has changed size since it was measured")
        elif sha256_file(path) != want.get("sha256"):
            problems.append(f"{path} does not match its sha256 in the manifest")
    return problems


def verify_stage(folder: str | Path, allow_failed: bool = False) -> dict | None:
    """The manifest of `folder` after checking the folder is exactly what its manifest measured.

    Raises ManifestError naming the first bad file (and how many more) for a missing or unparsable
    manifest, `ok` that is not the boolean true (unless `allow_failed`: measuring a failed stage
    is fine, serving one is not), or a missing, changed or extra file. Under
    `trust_unverified()` it logs the problems loudly and returns the manifest (None without one).
    """
    try:
        manifest = read_manifest(folder)
        problems = stage_problems(folder, manifest, allow_failed)
    except ManifestError as e:
        manifest, problems = None, [str(e)]
    if problems and _trust_unverified:
        for problem in problems:
            log.warning("UNVERIFIED (--trust-unverified): %s", problem)
        return manifest
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ManifestError(f"refusing {folder}: {problems[0]}{more}")
    return manifest


def verify_checkpoint(folder: str | Path) -> dict | None:
    """A model checkpoint about to be loaded: verified like a stage when it carries a manifest
    (one of ours: a merge, an imported base), used as it is when it has none (a checkpoint the
    user brought, such as the shipped tiny base; adapters pin it by hash in their manifests)."""
    return verify_stage(folder) if (Path(folder) / MANIFEST).is_file() else None

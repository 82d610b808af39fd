"""An unpacked bundle on the device, checked again: before every kiosk start (`bundle --verify`),
and whenever a folder inside it, or an engine built from one of its graphs, is opened to serve.

The chain from the signature to what is served:

- `bundle.json` verifies under the trusted key (`bundle_index.check_origin`);
- a stage inside the bundle: its `manifest.json` is the one the index signs (size and sha256),
  and lists exactly the files the index lists; the backend then checks every file against that
  manifest (`formats.verify_stage`). A weight changed on the device with the stage's manifest
  recomputed is refused, as `--verify` refuses it;
- an engine (built on the device, so never in a bundle): the graph it was built from (the path,
  `onnx_sha256` and `onnx_data_sha256` in its manifest) must be the one the bundle signs, and so
  must its copies of the tokenizer, template and config (`engine_manifest.SERVED_COPIES`).
  Otherwise it is stale (built before the bundle now unpacked), and the error names the command
  that rebuilds it. An engine built from a graph outside any bundle (a run on this machine) is
  checked against that graph on disk.

    orin-unlearn bundle --verify /opt/orin-unlearn/demo --model /opt/orin-unlearn/engine
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

from orin_unlearn.edge.device import keys
from orin_unlearn.edge.device.bundle_index import (
    INDEX,
    MAX_INDEX_BYTES,
    SIGNATURE,
    check_origin,
    foreign_entries,
    parse_index,
    warn_unverified,
)
from orin_unlearn.edge.device.engine_manifest import PLAN, SERVED_COPIES, external_data
from orin_unlearn.edge.device.unpack import Unpacked, check_stage_against_index
from orin_unlearn.edge.errors import BundleError, ManifestError
from orin_unlearn.edge.formats import (
    MANIFEST,
    read_manifest,
    sha256_file,
    stage_problems,
    trusting_unverified,
)

log = logging.getLogger(__name__)


def find_bundle(folder: str | Path) -> tuple[Path, str] | None:
    """(the unpacked bundle that holds `folder`, `folder`'s path inside it), or None: the nearest
    folder above `folder` (links resolved) with a `bundle.json`."""
    folder = Path(folder).resolve()
    for parent in folder.parents:
        if (parent / INDEX).is_file():
            return parent, folder.relative_to(parent).as_posix()
    return None


def read_installed(
    folder: Path, trust: str | Path | None = None, require_key: bool = False
) -> tuple[dict[str, Any], str | None]:
    """(the index, the signer's key sha256 or None) of the bundle unpacked in `folder`, after its
    signature is checked under the trusted key (resolved as for unpacking). Without a trusted key
    it raises when `require_key`, else warns that the origin is not verified."""
    trusted_path = keys.trusted_key_path(trust)
    if trusted_path is None and require_key:
        raise BundleError(
            f"no trusted key to check {folder} against: pass --trust PUB, set ${keys.TRUST_ENV} or "
            f"install {keys.INSTALLED_TRUST_KEY} (checksums alone do not show who made a bundle)"
        )
    trusted = keys.load_public_key(trusted_path) if trusted_path is not None else None
    try:
        if (folder / INDEX).stat().st_size > MAX_INDEX_BYTES:
            raise BundleError(f"{folder / INDEX} is larger than {MAX_INDEX_BYTES} bytes")
        data = (folder / INDEX).read_bytes()
        sig = (folder / SIGNATURE).read_bytes() if (folder / SIGNATURE).is_file() else None
    except OSError as e:
        raise BundleError(f"{folder} is not an unpacked bundle: {e}") from None
    signer = check_origin(folder, data, sig, trusted, trusted_path)
    index = parse_index(data, str(folder / INDEX))
    if signer is None:
        warn_unverified(folder, sig)
    return index, signer


def _check_file(path: Path, want: dict[str, Any]) -> None:
    """Raise BundleError unless `path` is one plain file (no link, one hard link) as `want` lists."""
    try:
        info = path.lstat()
    except OSError:
        raise BundleError(f"{path} is missing") from None
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        raise BundleError(f"{path} is a link, a special file or hard-linked: refusing it")
    if info.st_size != want["size"] or sha256_file(path) != want["sha256"]:
        raise BundleError(f"{path} does not match its size and sha256 in {INDEX}: altered since unpacking")


def verify_installed(
    folder: str | Path, trust: str | Path | None = None, model: str | Path | None = None
) -> Unpacked:
    """Check an unpacked bundle again, as the kiosk does before every start: the signature of its
    `bundle.json` under the trusted key (required), every listed file's size and sha256, nothing
    else in the folder, every stage's own manifest; with `model`, also that the folder `serve
    --model` is given is covered by this bundle (`check_served`).

    Raises BundleError (or ManifestError) naming the first file that differs; nothing is written.
    """
    folder = Path(folder)
    index, signer = read_installed(folder, trust, require_key=True)
    foreign, _ = foreign_entries(folder)
    if foreign:
        raise BundleError(f"{folder} holds {len(foreign)} file(s) not in its {INDEX}, e.g. {foreign[:3]}")
    for name, want in index["files"].items():
        _check_file(folder / name, want)
    for stage in index["stages"]:
        try:
            check_stage_against_index(folder, stage, index)
        except ManifestError as e:
            raise BundleError(str(e)) from None
    if model is not None:
        problems = stage_problems(model, read_manifest(model))
        if problems:
            raise BundleError(f"refusing {model}: {problems[0]}")
        root = check_served(model, trust)
        if root is None or root != folder.resolve():
            raise BundleError(
                f"{model} is not served from the bundle in {folder}: it is neither one of its stages "
                "nor an engine built from one of its graphs"
            )
    return Unpacked(index, signer)


def check_served(model_dir: str | Path, trust: str | Path | None = None) -> Path | None:
    """Raise unless what `model_dir` serves is what a signed bundle holds; returns that bundle's
    folder (None: `model_dir` is not tied to a bundle: a run's stage, a checkpoint of one's own).

    A folder inside an unpacked bundle must be one of its stages, with the manifest the index
    signs; an engine must be built from a graph of a bundle, with its tokenizer and template, or
    from a graph on disk that is still the same (see the module docstring).
    """
    folder = Path(model_dir)
    found = find_bundle(folder)
    if not (folder / MANIFEST).is_file():
        if found is not None:
            raise BundleError(f"{folder} lies in the unpacked bundle {found[0]} but is not one of its stages")
        return None
    manifest = read_manifest(folder)
    if manifest.get("stage") == "engine":
        return check_engine(folder, manifest, trust)
    if found is None:
        return None
    root, stage = found
    index, _ = read_installed(root, trust)
    if stage not in index["stages"]:
        raise BundleError(f"{folder} lies in the unpacked bundle {root} but is not one of its stages")
    signed = index["files"][f"{stage}/{MANIFEST}"]
    path = folder / MANIFEST
    if path.stat().st_size != signed["size"] or sha256_file(path) != signed["sha256"]:
        raise BundleError(
            f"{path} is not the manifest {root / INDEX} signs: the stage was changed on this device "
            "and its manifest recomputed (unpack the bundle again)"
        )
    check_stage_against_index(root, stage, index)
    return root


def _entry(entry: Any) -> tuple[Any, Any] | None:
    return (entry.get("size"), entry.get("sha256")) if isinstance(entry, dict) else None


def check_engine(folder: Path, manifest: dict[str, Any], trust: str | Path | None = None) -> Path | None:
    """Raise ManifestError, naming the command that rebuilds it, unless the engine in `folder`
    was built from the graph now in place: the one the bundle holding it signs, with the same
    tokenizer, template and config copies; or, outside a bundle, the graph on disk. Returns the
    bundle's folder (None outside one)."""
    graph, want = manifest.get("onnx"), manifest.get("onnx_sha256")
    if not isinstance(graph, str) or not isinstance(want, str):
        raise ManifestError(
            f"{folder / MANIFEST} does not record the graph the engine was built from; rebuild it: "
            f"orin-unlearn export engine --onnx GRAPH --out {folder}"
        )
    graph_path = Path(graph)
    rebuild = f"rebuild it: orin-unlearn export engine --onnx {graph_path} --out {folder}"
    found = find_bundle(graph_path.parent)
    if found is None:
        return _check_local_graph(folder, manifest, graph_path, rebuild)
    root, stage = found
    index, _ = read_installed(root, trust)
    signed = {name[len(stage) + 1 :]: e for name, e in index["files"].items() if name.startswith(f"{stage}/")}
    if stage not in index["stages"] or _entry(signed.get(graph_path.name)) is None:
        raise ManifestError(f"{folder} was built from {graph_path}, which the bundle in {root} does not hold")
    data_name = external_data(graph_path).name
    signed_data = signed.get(data_name, {}).get("sha256")
    if signed[graph_path.name]["sha256"] != want or signed_data != manifest.get("onnx_data_sha256"):
        raise ManifestError(
            f"{folder} is stale: it was built from another {graph_path.name} (sha256 {want[:16]}) than "
            f"the one the bundle in {root} signs ({signed[graph_path.name]['sha256'][:16]}); {rebuild}"
        )
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    for name in SERVED_COPIES:
        if _entry(files.get(name)) != _entry(signed.get(name)):
            raise ManifestError(
                f"{folder / name} is not the {stage}/{name} the bundle in {root} signs "
                f"({'missing' if name not in files else 'different'}); {rebuild}"
            )
    extra = sorted(set(files) - set(SERVED_COPIES) - {PLAN})
    if extra:
        raise ManifestError(f"{folder} holds {extra[0]}, which an engine build does not write; {rebuild}")
    return root


def _check_local_graph(folder: Path, manifest: dict[str, Any], graph: Path, rebuild: str) -> None:
    """An engine built from a graph outside any bundle: that graph, its external weights and the
    copies the engine holds must still be as they were when it was built."""
    if not graph.is_file():
        raise ManifestError(
            f"{folder} was built from {graph}, which no longer exists; rebuild it from the graph to "
            f"serve: orin-unlearn export engine --onnx GRAPH --out {folder}"
        )
    data = external_data(graph)
    if sha256_file(graph) != manifest["onnx_sha256"] or (
        sha256_file(data) if data.is_file() else None
    ) != manifest.get("onnx_data_sha256"):
        raise ManifestError(f"{folder} is stale: {graph} changed since the engine was built; {rebuild}")
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    for name in SERVED_COPIES:
        mine, source = _entry(files.get(name)), graph.parent / name
        if mine is not None and source.is_file() and mine[1] != sha256_file(source):
            raise ManifestError(f"{folder / name} differs from {source}; {rebuild}")


def verify_served(model_dir: str | Path) -> None:
    """`check_served` for a backend about to open `model_dir`; under --trust-unverified a problem
    is logged loudly instead, as `verify_stage` does."""
    try:
        check_served(model_dir)
    except (BundleError, ManifestError) as e:
        if not trusting_unverified():
            raise
        log.warning("UNVERIFIED (--trust-unverified): %s", e)

"""A tiny run with three verified stages, and tar surgery, for the bundle and unpack tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from orin_unlearn.edge.formats import make_manifest, write_manifest


def make_run(root: Path) -> Path:
    """`root/run` with `world`, `adapter` and `export/onnx-fp16`, each with a manifest that verifies."""
    stage = root / "run" / "export" / "onnx-fp16"
    (stage / "sub").mkdir(parents=True)
    (stage / "model.onnx").write_bytes(bytes(range(256)) * 400)
    (stage / "tokenizer.json").write_text('{"model": {}}')
    (stage / "sub" / "extra.bin").write_bytes(b"\x00" * 10)
    write_manifest(stage, make_manifest("onnx-fp16", {}, {}, {}, ok=True))
    adapter = root / "run" / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x01" * 64)
    write_manifest(adapter, make_manifest("adapter", {}, {}, {}, ok=True))
    world = root / "run" / "world"
    world.mkdir()
    (world / "heldout_forget.jsonl").write_text('{"messages": []}\n')
    write_manifest(world, make_manifest("world", {}, {}, {}, ok=True))
    return root / "run"


def read_members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def write_tar(path: Path, members, mode: str = "w") -> None:
    """A tar of (name, bytes) pairs in that order; `mode` "w:gz" etc. compresses it."""
    with tarfile.open(path, mode) as out:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def rewrite(source: Path, dest: Path, change, mode: str = "w") -> None:
    """Copy a tar member by member, letting `change(name, data)` alter or drop (None) each one."""
    changed = [(name, change(name, data)) for name, data in read_members(source)]
    write_tar(dest, [(name, data) for name, data in changed if data is not None], mode)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes: to show a refused command changed nothing."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def error_line(capsys) -> str:
    """The single stderr line of a refused command (after `main` returned 2)."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err

"""Simulated Jetsons: a root folder with the files a module has, and a command runner replaying
recorded tool output (samples/)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from orin_unlearn.edge.device.telemetry import CommandResult

SAMPLES = Path(__file__).parent / "samples"
ORIN_NANO_SUPER = (
    "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
    "p3768-0000+p3767-0005-super",
)
AGX_ORIN = ("NVIDIA Jetson AGX Orin Developer Kit", "p3737-0000+p3701-0005")


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def make_root(
    root: Path,
    board: tuple[str, str] = ORIN_NANO_SUPER,
    release: str | None = "nv_tegra_release_r36.4.3.txt",
    meminfo: str = "meminfo_orin_nano_8gb.txt",
    cuda: str | None = "12.6.68",
    soc: str = "tegra234",
) -> Path:
    """Write the files a Jetson has under `root`; None leaves a file out."""
    model, part = board
    tree = root / "proc" / "device-tree"
    tree.mkdir(parents=True)
    (tree / "model").write_text(model + "\x00")
    module = part.split("+")[1].removesuffix("-super")
    (tree / "compatible").write_text(f"nvidia,{part}\x00nvidia,{module}\x00nvidia,{soc}\x00")
    (root / "proc" / "meminfo").write_text(sample(meminfo))
    if release is not None:
        (root / "etc").mkdir()
        (root / "etc" / "nv_tegra_release").write_text(sample(release))
    if cuda is not None:
        (root / "usr" / "local" / "cuda").mkdir(parents=True)
        version = {"cuda": {"name": "CUDA SDK", "version": cuda}, "cuda_cudart": {"version": cuda}}
        (root / "usr" / "local" / "cuda" / "version.json").write_text(json.dumps(version))
    return root


def runner(outputs: dict[str, str | CommandResult | None]) -> Callable[[Sequence[str]], CommandResult | None]:
    """A command runner answering by program name: text is stdout with status 0, None = not installed."""
    calls: list[list[str]] = []

    def run(argv: Sequence[str]) -> CommandResult | None:
        calls.append(list(argv))
        out = outputs.get(argv[0])
        return CommandResult(0, out, "") if isinstance(out, str) else out

    run.calls = calls  # type: ignore[attr-defined]
    return run

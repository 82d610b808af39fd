"""Every import of the project, top-level or inside a function, goes the way ARCHITECTURE.md's
layer table allows; the table is the single source of truth, read here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "benchmarks", "train", "export")
ROW = re.compile(r"^\| (\w+) \| (.*?) \| (.*?) \|$")


def layer_table(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """({module prefix: layer}, {layer: layers it may import}) from the Markdown table."""
    prefixes: dict[str, str] = {}
    allowed: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = ROW.match(line.strip())
        if not match or match.group(1) == "layer":
            continue
        layer, modules, may = match.groups()
        for module in re.findall(r"`([\w.]+)`", modules):
            prefixes[module] = layer
        allowed[layer] = {name.strip() for name in may.split(",") if name.strip() not in ("", "nothing")}
    return prefixes, allowed


def layer_of(module: str, prefixes: dict[str, str]) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in prefixes:
            return prefixes[".".join(parts[:n])]
    return None


def project_modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports_of(path: Path, modules: set[str]) -> list[tuple[int, str]]:
    """(line, project module) of every import statement in the file, wherever it stands;
    `from orin_unlearn.edge import formats` names the module edge.formats."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}"[13:] in modules else node.module
                for a in node.names
            ]
        else:
            continue
        found += [(node.lineno, n[len("orin_unlearn.") :]) for n in names if n.startswith("orin_unlearn.")]
    return found


TABLE = layer_table((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))
MODULES = project_modules()


def test_the_table_is_read_and_places_every_module():
    prefixes, allowed = TABLE
    assert {"core", "device", "runtime", "cli", "world", "models", "benchmarks", "train", "export"} <= set(
        allowed
    )
    unplaced = [m for m in MODULES if layer_of(m, prefixes) is None]
    assert not unplaced, f"modules in no layer of ARCHITECTURE.md: {unplaced}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module):
    prefixes, allowed = TABLE
    layer = layer_of(module, prefixes)
    bad = []
    for line, target in imports_of(MODULES[module], set(MODULES)):
        other = layer_of(target, prefixes)
        if other != layer and other not in allowed[layer]:
            bad.append(f"line {line}: {target} ({other})")
    assert not bad, f"{module} ({layer}) may import only {sorted(allowed[layer])}: " + "; ".join(bad)


def test_a_wrong_import_is_caught(tmp_path):
    """The check itself: an edge core module importing a stage package is reported."""
    prefixes, allowed = TABLE
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from orin_unlearn.train.unlearn import recipe\n")
    (target,) = [t for _, t in imports_of(source, set(MODULES))]
    assert target == "train.unlearn.recipe"
    assert layer_of(target, prefixes) not in allowed[layer_of("edge.formats", prefixes)]

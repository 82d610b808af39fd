"""One chain from the signature to what is served (issue 30, finding 2): a stage inside an unpacked
bundle is served only as the bundle signs it, and an engine only when it was built from the graph,
tokenizer and template the bundle now signs; the kiosk unit's own commands refuse a stale engine
and name the command that rebuilds it. No TensorRT: the engine is a stand-in (a plan of a few
bytes, stamped by the project's own `engine_manifest.stamp`)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from orin_unlearn.edge import cli
from orin_unlearn.edge.device import keys
from orin_unlearn.edge.device.bundle import pack, unpack
from orin_unlearn.edge.device.engine_manifest import SERVED_COPIES, DeviceInfo, stamp
from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import make_manifest, write_manifest
from orin_unlearn.edge.trt_engine import load_engine, tensorrt_available
from tests.edge.bundles import error_line, make_run

UNIT = Path(__file__).resolve().parents[2] / "jetson" / "orin-unlearn-kiosk.service"
ORIN = DeviceInfo("10.3.0", "Orin", "8.7", "36.4.3")
GRAPH = "export/onnx-fp16"

pytestmark = pytest.mark.usefixtures("no_installed_key")


@pytest.fixture
def public(tmp_path, monkeypatch):
    """A key pair; its public half trusted as the kiosk unit trusts it (the environment)."""
    private, public = keys.new_keypair(tmp_path / "keys")
    monkeypatch.setenv(keys.TRUST_ENV, str(public))
    return private


def stand_in_engine(graph: Path, engine: Path) -> Path:
    """What `export engine` leaves, without TensorRT: a plan, the graph folder's serving files,
    and the manifest `stamp` writes (the graph's path and sha256, the device)."""
    engine.mkdir()
    (engine / "model.plan").write_bytes(b"a serialised plan stands here")
    for name in SERVED_COPIES:
        if (graph.parent / name).is_file():
            shutil.copy2(graph.parent / name, engine / name)
    stamp(engine, graph, ORIN, {"profiles": []})
    return engine


@pytest.fixture
def device(tmp_path, public):
    """(the unpacked signed bundle, the engine built from its graph): the kiosk's two folders."""
    run = make_run(tmp_path)
    (run / GRAPH / "chat_template.jinja").write_text("{{ messages }}")
    write_manifest(run / GRAPH, make_manifest("onnx-fp16", {}, {}, {}, ok=True))
    pack(run, tmp_path / "v1.tar", sign=public, version=1)
    bundle = tmp_path / "opt" / "demo"
    unpack(tmp_path / "v1.tar", bundle)
    return bundle, stand_in_engine(bundle / GRAPH / "model.onnx", tmp_path / "opt" / "engine")


def new_bundle(tmp_path, private, bundle, change):
    """Unpack over `bundle` a newer signed bundle whose graph stage `change(stage)` altered."""
    run = tmp_path / "run"
    change(run / GRAPH)
    write_manifest(run / GRAPH, make_manifest("onnx-fp16", {}, {}, {}, ok=True))
    pack(run, tmp_path / "v2.tar", sign=private, version=2)
    unpack(tmp_path / "v2.tar", bundle)


def verify(bundle, engine) -> int:
    return cli.main(["bundle", "--verify", str(bundle), "--model", str(engine)])


def test_an_engine_built_from_the_signed_graph_is_covered(device, capsys):
    bundle, engine = device
    assert verify(bundle, engine) == 0
    assert f"{engine} is covered by it" in capsys.readouterr().out
    assert cli.main(["bundle", "--verify", str(bundle), "--model", str(bundle / GRAPH)]) == 0


def test_a_stale_engine_is_refused_with_the_command_that_rebuilds_it(device, tmp_path, public, capsys):
    bundle, engine = device
    new_bundle(tmp_path, public, bundle, lambda s: (s / "model.onnx").write_bytes(b"the unlearned graph"))
    assert verify(bundle, engine) == 2
    err = error_line(capsys)
    rebuild = f"orin-unlearn export engine --onnx {bundle.resolve() / GRAPH / 'model.onnx'} --out {engine}"
    assert "is stale" in err and rebuild in err
    with pytest.raises(ManifestError, match="is stale"):  # the loader, before TensorRT or the device
        load_engine(engine, device=ORIN)


@pytest.mark.parametrize("name", ["chat_template.jinja", "tokenizer.json"])
def test_an_engine_whose_tokenizer_or_template_is_not_the_signed_one_is_refused(device, capsys, name):
    bundle, engine = device
    (engine / name).write_text('{"a system prompt": "of someone else"}')
    stamp(engine, bundle / GRAPH / "model.onnx", ORIN, {"profiles": []})  # its manifest recomputed
    assert verify(bundle, engine) == 2
    assert f"{engine / name} is not the {GRAPH}/{name} the bundle" in error_line(capsys)
    with pytest.raises(ManifestError, match=name):
        load_engine(engine, device=ORIN)


def test_a_new_template_in_the_bundle_makes_the_engine_stale(device, tmp_path, public, capsys):
    bundle, engine = device
    new_bundle(tmp_path, public, bundle, lambda s: (s / "chat_template.jinja").write_text("{{ 1 }}"))
    assert verify(bundle, engine) == 2
    assert "chat_template.jinja is not the" in error_line(capsys)


def unit_commands(bundle: Path, engine: Path, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(the `bundle --verify` and the `serve` arguments) of the shipped unit, on these folders."""
    lines = [
        line for line in UNIT.read_text().splitlines() if line.startswith(("ExecStart=", "ExecStartPre="))
    ]

    def argv(line: str) -> list[str]:
        words = shlex.split(line.split("=", 1)[1].lstrip("-"))[1:]  # without the venv's orin-unlearn
        swap = {"/opt/orin-unlearn/demo": str(bundle), "/opt/orin-unlearn/engine": str(engine)}
        swap["/var/lib/orin-unlearn/latency.jsonl"] = str(tmp_path / "latency.jsonl")
        return [swap.get(w, w) for w in words]

    (check,) = [argv(line) for line in lines if "bundle --verify" in line]
    (serve,) = [argv(line) for line in lines if line.startswith("ExecStart=")]
    return check, serve


def test_the_kiosk_units_path_from_signature_to_served_engine(device, tmp_path, public, capsys):
    bundle, engine = device
    check, serve = unit_commands(bundle, engine, tmp_path)
    assert check[:2] == ["bundle", "--verify"] and "--model" in check and serve[0] == "serve"
    assert cli.main(check) == 0
    if not tensorrt_available(runtime_only=True)[0]:  # a fresh engine gets as far as loading it
        assert cli.main(serve) == 2
        assert "TensorRT not available here" in error_line(capsys)
    capsys.readouterr()
    new_bundle(tmp_path, public, bundle, lambda s: (s / "model.onnx").write_bytes(b"the unlearned graph"))
    assert cli.main(check) == 2
    assert "rebuild it: orin-unlearn export engine --onnx" in error_line(capsys)
    assert cli.main(serve) == 2  # serve refuses it too, whoever starts it
    assert "is stale" in error_line(capsys)


def test_a_weight_changed_in_an_unpacked_bundle_is_not_asked(onnx_dir, tmp_path, public, capsys):
    """The ONNX analogue: a weight flipped in an unpacked signed bundle and the stage's manifest
    recomputed to match: `ask` refuses it, as `--verify` does."""
    run = tmp_path / "run"
    shutil.copytree(onnx_dir, run / GRAPH)
    pack(run, tmp_path / "k.tar", stages=[GRAPH], sign=public)
    bundle = tmp_path / "device"
    unpack(tmp_path / "k.tar", bundle)
    stage = bundle / GRAPH
    ask = ["ask", "--model", str(stage), "--max-new-tokens", "2", "Which film?"]
    assert cli.main(ask) == 0  # as unpacked: answered
    capsys.readouterr()
    weights = bytearray((stage / "model.onnx").read_bytes())
    weights[len(weights) // 2] ^= 0xFF  # the middle of the graph is weight bytes
    (stage / "model.onnx").write_bytes(bytes(weights))
    manifest = json.loads((stage / "manifest.json").read_text())
    write_manifest(stage, {k: v for k, v in manifest.items() if k != "files"})
    assert cli.main(ask) == 2
    err = error_line(capsys)
    assert f"{stage / 'manifest.json'} is not the manifest" in err and "bundle.json" in err
    assert cli.main(["bundle", "--verify", str(bundle)]) == 2
    capsys.readouterr()


def test_a_folder_in_a_bundle_that_is_not_a_stage_is_refused(device, capsys):
    bundle, _ = device
    extra = bundle / "export" / "mine"
    shutil.copytree(bundle / GRAPH, extra)
    assert cli.main(["ask", "--model", str(extra), "hi"]) == 2
    assert "is not one of its stages" in error_line(capsys)


def test_the_copies_checked_are_the_ones_an_engine_build_makes():
    from orin_unlearn.export.trt_build import SERVING_FILES

    assert set(SERVED_COPIES) == set(SERVING_FILES)

"""Unpacking on the device: never deletes someone's files, replaces an earlier bundle only once
the new one verified, stops compression bombs before they fill the disk, says in one line what is
wrong with a malformed bundle, and cleans up after a killed unpack."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from orin_unlearn.edge import cli
from orin_unlearn.edge.device import keys
from orin_unlearn.edge.device import unpack as unpack_module
from orin_unlearn.edge.device.bundle import INDEX, BundleError, pack, unpack
from orin_unlearn.edge.formats import make_manifest, write_manifest
from tests.edge.bundles import error_line, read_members, rewrite, snapshot, write_tar


def main(argv: list[str]) -> int:
    """The command as the console script runs it (errors become exit statuses in the CLI)."""
    return cli.main(["bundle", *argv])


MiB = 1 << 20

pytestmark = pytest.mark.usefixtures("no_installed_key")


@pytest.fixture
def bundle(run, tmp_path):
    pack(run, tmp_path / "kiosk.tar")
    return tmp_path / "kiosk.tar"


def argv(bundle, into, *extra):
    return ["--unpack", str(bundle), "--into", str(into), *map(str, extra)]


def test_a_folder_with_someone_elses_files_is_refused_and_left_alone(bundle, tmp_path, capsys):
    into = tmp_path / "device"
    into.mkdir()
    (into / "notes.txt").write_text("mine")
    assert main(argv(bundle, into)) == 2
    err = error_line(capsys)
    assert "holds 1 file that is not from an orin-unlearn bundle (notes.txt); choose an empty folder" in err
    assert snapshot(into) == {"notes.txt": b"mine"} and not list(tmp_path.glob(".device*"))


def test_files_added_to_an_earlier_bundle_are_not_deleted(bundle, tmp_path, capsys):
    into = tmp_path / "device"
    unpack(bundle, into)
    (into / "engine").mkdir()
    (into / "engine" / "model.plan").write_bytes(b"built on the device")
    (into / "adapter" / "notes.txt").write_text("mine")
    before = snapshot(into)
    assert main(argv(bundle, into)) == 2
    err = error_line(capsys)
    assert "2 entries that are not from an orin-unlearn bundle (adapter/notes.txt, engine/)" in err
    assert snapshot(into) == before


def test_an_earlier_bundle_is_replaced_and_a_corrupt_one_changes_nothing(run, bundle, tmp_path):
    into = tmp_path / "device"
    unpack(bundle, into)
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\x07" * 32)
    write_manifest(run / "adapter", make_manifest("adapter", {}, {}, {}, ok=True))
    pack(run, tmp_path / "second.tar")
    unpack(tmp_path / "second.tar", into)
    assert (into / "adapter" / "adapter_model.safetensors").read_bytes() == b"\x07" * 32
    second = snapshot(into)
    flip = lambda name, data: data[:-1] + b"!" if name.endswith("model.onnx") else data  # noqa: E731
    rewrite(tmp_path / "second.tar", tmp_path / "corrupt.tar", flip)
    with pytest.raises(BundleError, match="model.onnx does not match"):
        unpack(tmp_path / "corrupt.tar", into)
    assert snapshot(into) == second and not list(tmp_path.glob(".device*"))


def bomb_index(files: dict[str, bytes], sizes: dict[str, int] | None = None) -> bytes:
    """An index for `files` (all in stage `s`, with a manifest), sizes overridable (lies)."""
    entries = {
        name: {"size": (sizes or {}).get(name, len(data)), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in files.items()
    }
    return json.dumps({"stages": ["s"], "files": entries}).encode()


def largest_file(tmp_path) -> int:
    return max(
        (p.stat().st_size for p in tmp_path.rglob("*") if p.is_file() and "bomb" not in p.name), default=0
    )


def test_a_member_larger_than_its_index_entry_is_stopped_before_it_is_written(tmp_path, capsys):
    files = {"s/manifest.json": b"{}", "s/weights.bin": b"\x00" * (64 * MiB)}
    index = bomb_index(files, sizes={"s/weights.bin": 1024})
    write_tar(tmp_path / "bomb.tar.gz", [(INDEX, index), *files.items()], "w:gz")
    assert (tmp_path / "bomb.tar.gz").stat().st_size < MiB  # 64 MiB of content in a small file
    assert main(argv(tmp_path / "bomb.tar.gz", tmp_path / "device")) == 2
    assert "weights.bin is 67108864 bytes in the tar but bundle.json lists 1024" in error_line(capsys)
    assert largest_file(tmp_path) <= 1024 and not list(tmp_path.glob(".device*"))


def test_a_bundle_whose_total_passes_max_bytes_writes_nothing(tmp_path, capsys):
    files = {"s/manifest.json": b"{}", "s/a.bin": b"\x00" * (3 * MiB), "s/b.bin": b"\x00" * (3 * MiB)}
    write_tar(tmp_path / "bomb.tar.xz", [(INDEX, bomb_index(files)), *files.items()], "w:xz")
    assert main(argv(tmp_path / "bomb.tar.xz", tmp_path / "device", "--max-bytes", "4M")) == 2
    assert f"lists {6 * MiB + 2} bytes, more than the cap of {4 * MiB}" in error_line(capsys)
    assert largest_file(tmp_path) == 0 and not list(tmp_path.glob(".device*"))


def test_a_copy_stops_as_soon_as_it_passes_the_listed_size(tmp_path):
    """Behind the tar header check: the copy itself never writes past the index's size."""
    budget = unpack_module._Budget(tmp_path / "b.tar", 10 * MiB)
    want = {"size": MiB, "sha256": "0" * 64}
    with pytest.raises(BundleError, match="longer than the 1048576 bytes"):
        unpack_module._copy(io.BytesIO(b"\x00" * (8 * MiB)), tmp_path / "out", want, budget, "b.tar:out")
    assert (tmp_path / "out").stat().st_size <= MiB
    with pytest.raises(BundleError, match="more than 4"):
        unpack_module._Budget(tmp_path / "b.tar", 4).take(5)


@pytest.mark.parametrize(
    "index, problem",
    [
        (b'{"files": null}', "'files' is null"),
        (b'{"stages": ["s"], "files": null}', "'files' is null"),
        (b'{"stages": ["s"], "files": []}', "'files' is []"),
        (b"[1, 2]", "is not a JSON object but list"),
        (b"{not json", "is not valid JSON"),
        (b'{"stages": ["s"], "files": {"s/manifest.json": {"size": 2}}}', "sha256 null"),
        (b'{"stages": ["s"], "files": {"s/manifest.json": {"sha256": "00"}}}', "size null"),
        (b'{"stages": ["s"], "files": {"../x": {"size": 2, "sha256": "00"}}}', "not a relative path"),
    ],
)
def test_a_malformed_index_is_one_line(tmp_path, capsys, index, problem):
    write_tar(tmp_path / "bad.tar", [(INDEX, index), ("s/manifest.json", b"{}")])
    assert main(argv(tmp_path / "bad.tar", tmp_path / "device")) == 2
    err = error_line(capsys)
    assert f"bad.tar:{INDEX}" in err and problem in err
    assert not (tmp_path / "device").exists()


@pytest.mark.parametrize("content", [b"", b"not a tar at all" * 100])
def test_something_that_is_not_a_tar_is_one_line(tmp_path, capsys, content):
    (tmp_path / "x.tar").write_bytes(content)
    assert main(argv(tmp_path / "x.tar", tmp_path / "device")) == 2
    assert "x.tar" in error_line(capsys)
    assert main(argv(tmp_path / "absent.tar", tmp_path / "device")) == 2
    assert "absent.tar does not exist" in error_line(capsys)


def test_a_killed_unpacks_litter_is_removed_by_the_next_one(bundle, tmp_path):
    litter = tmp_path / ".device.orin-tmp-99999999"  # no such process
    (litter / "adapter").mkdir(parents=True)
    (litter / "adapter" / "half.bin").write_bytes(b"\x00" * MiB)
    unpack(bundle, tmp_path / "device")
    assert not litter.exists() and (tmp_path / "device" / INDEX).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".device")] == []


def test_a_bundle_moved_aside_by_a_killed_unpack_is_put_back(bundle, tmp_path):
    into = tmp_path / "device"
    unpack(bundle, into)
    first = snapshot(into)
    os.replace(into, tmp_path / ".device.orin-old-99999999")  # killed between the two renames
    cut = bundle.read_bytes()
    (tmp_path / "cut.tar").write_bytes(cut[: len(cut) // 2])
    with pytest.raises(BundleError, match="cut.tar"):
        unpack(tmp_path / "cut.tar", into)
    assert snapshot(into) == first and not list(tmp_path.glob(".device*"))


def test_symlinks_and_directories_in_the_tar_are_refused(bundle, tmp_path):
    members = read_members(bundle)
    with tarfile.open(tmp_path / "link.tar", "w") as tar:
        for name, data in members[:1]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("adapter/adapter_model.safetensors")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(BundleError, match="not a plain, relative file"):
        unpack(tmp_path / "link.tar", tmp_path / "device")
    assert not (tmp_path / "device").exists()


# Bounded memory (issue 30, finding 3): tarfile reads a long-name or PAX record whole, before
# the signature is checked; such records are refused before they are read.

HEADER_BOMB = 256 * MiB  # today's tarfile: 614 MB resident to read this one name


def header_bomb(path, size: int = HEADER_BOMB) -> None:
    """A .tar.xz (small on disk) whose first header is a GNU long-name record of `size` bytes."""
    import lzma

    head = tarfile.TarInfo("././@LongLink")
    head.type, head.size = tarfile.GNUTYPE_LONGNAME, size
    block = b"a" * MiB
    xz = lzma.LZMACompressor(preset=0)
    with open(path, "wb") as out:
        out.write(xz.compress(head.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(size // MiB):
            out.write(xz.compress(block))
        out.write(xz.compress(b"\0" * 2 * tarfile.RECORDSIZE))
        out.write(xz.flush())


def test_a_header_bomb_is_refused_in_under_300_mb(tmp_path):
    import subprocess
    import sys

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs to measure the peak resident memory")
    header_bomb(tmp_path / "bomb.tar.xz")
    assert (tmp_path / "bomb.tar.xz").stat().st_size < MiB
    _, public = keys.new_keypair(tmp_path / "keys")
    # The child's peak (VmHWM) starts as this test process's, inherited across fork: reset it first.
    child = (
        "import json, sys\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "from orin_unlearn.edge import cli\n"
        "status = cli.main(sys.argv[1:])\n"
        "peak = [int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:')]\n"
        "print(json.dumps([status, peak[0]]))\n"
    )
    command = ["bundle", *argv(tmp_path / "bomb.tar.xz", tmp_path / "device", "--trust", public)]
    done = subprocess.run(
        [sys.executable, "-c", child, *command], capture_output=True, text=True, timeout=120
    )
    status, peak_kib = json.loads(done.stdout.splitlines()[-1])
    assert peak_kib * 1024 < 300 * MiB, f"peak resident {peak_kib / 1024:.0f} MiB"
    assert status == 2 and "extended tar header" in done.stderr, done.stderr
    assert not (tmp_path / "device").exists()


def pax_member(name: str, data: bytes, records: dict[str, str]) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.pax_headers = len(data), records
    return info, data


def test_a_pax_record_over_the_bound_is_refused(bundle, tmp_path, capsys):
    members = read_members(bundle)
    with tarfile.open(tmp_path / "pax.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        info, data = pax_member(members[0][0], members[0][1], {"comment": "x" * MiB})
        tar.addfile(info, io.BytesIO(data))
        for name, data in members[1:]:
            info, data = pax_member(name, data, {})
            tar.addfile(info, io.BytesIO(data))
    assert main(argv(tmp_path / "pax.tar", tmp_path / "device")) == 2
    assert "an extended tar header (long name or PAX record) of" in error_line(capsys)
    assert not (tmp_path / "device").exists()


def test_a_chain_of_long_name_records_is_refused(bundle, tmp_path, capsys):
    members = read_members(bundle)
    with open(tmp_path / "chain.tar", "wb") as out:
        for _ in range(6):  # six small long-name records, each naming the index
            name = INDEX.encode() + b"\0"
            head = tarfile.TarInfo("././@LongLink")
            head.type, head.size = tarfile.GNUTYPE_LONGNAME, len(name)
            out.write(head.tobuf(format=tarfile.GNU_FORMAT) + name.ljust(512, b"\0"))
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert main(argv(tmp_path / "chain.tar", tmp_path / "device")) == 2
    assert "more than 4 extended tar headers in a row" in error_line(capsys)


def test_long_member_names_still_round_trip(tmp_path):
    """What pack writes for a name over 100 characters (a PAX path record) is within the bound."""
    from tests.edge.bundles import make_run

    run = make_run(tmp_path)
    stage = run / "export" / "onnx-fp16"
    long_name = "n" * 150 + ".json"
    (stage / long_name).write_text("{}")
    write_manifest(stage, make_manifest("onnx-fp16", {}, {}, {}, ok=True))
    pack(run, tmp_path / "long.tar.xz")
    unpack(tmp_path / "long.tar.xz", tmp_path / "device")
    assert (tmp_path / "device" / "export" / "onnx-fp16" / long_name).read_text() == "{}"


def test_an_xz_stream_asking_for_a_huge_decoder_is_refused(bundle, tmp_path, capsys):
    import lzma

    # a 160 MiB dictionary (xz allows 1.5 GiB): a decoder that large is refused before it is made
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 160 * MiB, "mf": lzma.MF_HC3, "nice_len": 8}]
    (tmp_path / "big.tar.xz").write_bytes(lzma.compress(bundle.read_bytes(), filters=filters))
    assert main(argv(tmp_path / "big.tar.xz", tmp_path / "device")) == 2
    assert "is not a readable xz stream" in error_line(capsys)


# Versions (issue 30, finding 6): an older, validly signed bundle never replaces a newer one.


def test_an_older_bundle_is_refused_unless_a_downgrade_is_allowed(run, tmp_path, capsys):
    into = tmp_path / "device"
    pack(run, tmp_path / "v7.tar", version=7)
    pack(run, tmp_path / "v5.tar", version=5)
    unpack(tmp_path / "v7.tar", into)
    before = snapshot(into)
    assert main(argv(tmp_path / "v5.tar", into)) == 2
    assert "is version 5, older than version 7 unpacked in" in error_line(capsys)
    assert snapshot(into) == before
    assert main(argv(tmp_path / "v7.tar", into)) == 0  # the same version again: a repair
    assert main(argv(tmp_path / "v5.tar", into, "--allow-downgrade")) == 0
    assert json.loads((into / INDEX).read_text())["version"] == 5


def test_pack_writes_a_growing_version_by_default(run, tmp_path):
    first = pack(run, tmp_path / "a.tar")["version"]
    assert isinstance(first, int) and first >= 1_700_000_000  # seconds: later packs get larger ones
    with pytest.raises(BundleError, match="'version' is -1"):
        pack(run, tmp_path / "b.tar", version=-1)


def test_the_decompressed_stream_stops_at_its_limit(tmp_path):
    """Behind the header checks: whatever a tar reader asks for, no more than the limit is read."""
    import gzip

    from orin_unlearn.edge.device.tar_stream import BoundedStream

    (tmp_path / "zeros.gz").write_bytes(gzip.compress(b"\0" * (16 * MiB)))
    with BoundedStream(tmp_path / "zeros.gz", limit=MiB) as stream:
        assert len(stream.read(MiB)) == MiB
        with pytest.raises(BundleError, match="goes on past the 1048576 bytes"):
            stream.read(16 * MiB)
        stream.allow(2 * MiB)
        assert len(stream.read(2 * MiB)) == 2 * MiB

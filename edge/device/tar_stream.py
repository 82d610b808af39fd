"""A bundle's tar read with bounded memory: how many decompressed bytes may be read, and how large
an extended header may be, whatever the file holds.

`tarfile` reads a GNU long-name record or a PAX header whole, before it returns the member it
belongs to: a 39 KB `.tar.xz` whose first header claims a 256 MiB name took 614 MB to read. So
the decompressed stream is counted here (`BoundedStream`: until the signature is checked, the
reader may take only the index, the signature and a few header blocks; after it, the total the
index lists plus header slack), extended headers over `MAX_EXTENSION_BYTES` and chains of them are
refused before they are read (`BoundedTarInfo`), and an xz stream may not ask for a decoder
larger than `XZ_MEMORY_LIMIT`. gzip, bzip2 and xz are told apart by their magic bytes.

    with BoundedStream(path, limit=head_bytes()) as stream:
        tar = tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo)
"""

from __future__ import annotations

import bz2
import io
import lzma
import tarfile
import zlib
from pathlib import Path
from typing import Any

from orin_unlearn.edge.errors import BundleError

BLOCK = tarfile.BLOCKSIZE
MAX_EXTENSION_BYTES = 16 << 10  # a PAX header or GNU long name: a path of a few hundred bytes at most
MAX_EXTENSION_CHAIN = 4  # extended headers in a row before one member (our tars use at most one)
# what a member may add to its data: its header, extended headers and padding to a block
MEMBER_SLACK = 2 * BLOCK + MAX_EXTENSION_CHAIN * (BLOCK + MAX_EXTENSION_BYTES)
XZ_MEMORY_LIMIT = 128 << 20  # xz -9 decodes in 65 MiB; a stream asking for more is refused
READ_CHUNK = 64 << 10
_MAGIC = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
_EXTENDED = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


def head_bytes(max_index: int, max_signature: int) -> int:
    """What may be read before the signature is checked: the index and signature members with
    their headers, the next member's header, and the tar reader's read-ahead of one record."""
    return max_index + max_signature + 3 * MEMBER_SLACK + tarfile.RECORDSIZE


def body_bytes(index_total: int, members: int) -> int:
    """What the members of an index may add after it: their data, each one's header slack, the
    end-of-archive blocks and the reader's read-ahead."""
    return index_total + members * MEMBER_SLACK + 2 * tarfile.RECORDSIZE


class _Plain:
    """The decompressor of an uncompressed tar: what was read, handed out `max_length` at a time."""

    eof = False

    def __init__(self) -> None:
        self._pending = b""

    @property
    def needs_input(self) -> bool:
        return not self._pending

    def decompress(self, data: bytes, max_length: int) -> bytes:
        data = self._pending + data
        self._pending = data[max_length:]
        return data[:max_length]


def _decompressor(kind: str | None) -> Any:
    if kind == "gz":
        return _Gzip()
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMORY_LIMIT)
    return _Plain()


class _Gzip:
    """zlib's gzip decoder with the `needs_input` interface of bz2's and lzma's."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self._z.eof

    @property
    def needs_input(self) -> bool:
        return not self._z.unconsumed_tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._z.decompress(self._z.unconsumed_tail + data, max_length)


class BoundedStream(io.RawIOBase):
    """The decompressed bytes of `path`, of which at most `limit` may be read (`allow` raises it):
    a read past it raises BundleError, and no read holds more than it asked for in memory."""

    def __init__(self, path: str | Path, limit: int) -> None:
        super().__init__()
        self.path = Path(path)
        self._file = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        head = self._file.read(6)
        self._kind = next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)
        self._file.seek(0)
        self._decoder = _decompressor(self._kind)
        self.name = str(self.path)
        self.position, self.limit = 0, limit

    def allow(self, more: int) -> None:
        """Let `more` bytes past what has been read so far be read."""
        self.limit = self.position + more

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        data = self._next(min(len(view), self.limit - self.position + 1))
        if self.position + len(data) > self.limit:
            raise BundleError(
                f"{self.path}: the tar goes on past the {self.limit} bytes its headers and index allow "
                "(a header bomb, or data the index does not list); stopped"
            )
        view[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _next(self, want: int) -> bytes:
        """Up to `want` decompressed bytes (b"" at the end of the file or of the stream)."""
        try:
            while not self._decoder.eof:
                data = b"" if not self._decoder.needs_input else self._file.read(READ_CHUNK)
                if not data and self._decoder.needs_input:
                    return b""  # the file ends here; the tar reader says what is missing
                out = self._decoder.decompress(data, want)
                if out:
                    return out
            return b""
        except lzma.LZMAError as e:
            raise BundleError(f"{self.path} is not a readable xz stream: {e}") from None
        except (OSError, zlib.error) as e:
            raise BundleError(f"{self.path} cannot be decompressed: {e}") from None

    def close(self) -> None:
        self._file.close()
        super().close()


class BoundedTarInfo(tarfile.TarInfo):
    """A tar header that refuses, before reading them, extended headers (GNU long names, PAX
    records) over `MAX_EXTENSION_BYTES`, more than `MAX_EXTENSION_CHAIN` of them in a row, and
    GNU sparse members (whose maps are read whole too)."""

    # `_proc_member` is where every tarfile since Python 2 dispatches a header it has just read
    # (3.10 to 3.13 included); checking there is the only way in before a record is read whole.
    def _proc_member(self, tar: tarfile.TarFile) -> Any:
        extended = self.type in _EXTENDED
        chain = getattr(tar, "_orin_chain", 0) + 1 if extended else 0
        tar._orin_chain = chain  # type: ignore[attr-defined]
        where = getattr(tar.fileobj, "name", None) or "the bundle"
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise BundleError(f"{where}: refusing member {self.name!r}: a GNU sparse file")
        if extended and self.size > MAX_EXTENSION_BYTES:
            raise BundleError(
                f"{where}: an extended tar header (long name or PAX record) of {self.size} bytes, more "
                f"than {MAX_EXTENSION_BYTES}: refused before reading it"
            )
        if chain > MAX_EXTENSION_CHAIN:
            raise BundleError(f"{where}: more than {MAX_EXTENSION_CHAIN} extended tar headers in a row")
        return super()._proc_member(tar)

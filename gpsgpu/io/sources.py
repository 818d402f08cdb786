"""Opening inputs: a path or ``-`` (stdin), plain, gzip, zstd, bzip2 or xz (detected by magic bytes).

The SHA-256 of the bytes as stored (compressed or not) is computed while reading, for
``metadata.json``; nothing is read twice, so stdin works the same as a file.

Nothing is lost silently: a compressed input that ends before its end-of-stream marker (a copy cut
short) or holds corrupt data, and a file that cannot be read, raise :class:`InputError` naming the
file, wherever the read happens. A leading UTF-8 byte-order mark is dropped. Lines are read in
bounded memory: one longer than :data:`MAX_RECORD_BYTES` is skipped and reported, never held whole.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gpsgpu.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"

#: Lines are handed to parsers in chunks of about this many bytes.
CHUNK_BYTES = 16 << 20
#: The longest line (record) read; a longer one is rejected (``record_too_long``) without being held.
MAX_RECORD_BYTES = 1 << 20
#: Bytes of a skipped long line kept for its reject.
LONG_LINE_EXCERPT_BYTES = 2048
#: Compressed bytes handed to the zstd decompressor at a time: a zstd block expands at most about
#: 32,768-fold, so one call makes at most ~64 MiB even from a decompression bomb.
_ZSTD_FEED_BYTES = 2048

#: Errors a decompressor raises for data that is not a valid stream of its format.
_CORRUPT = (OSError, zlib.error, lzma.LZMAError, ValueError)


def printable(data: bytes | str, limit: int = 60) -> str:
    """``data`` as a short, safe excerpt for a one-line message: ``repr``-escaped (no terminal
    control sequences, no raw bytes) and cut to about ``limit`` characters."""
    if isinstance(data, bytes):
        data = data[: limit * 4].decode("utf-8", errors="backslashreplace")
    shown = repr(data[:limit])
    return shown + "..." if len(data) > limit else shown


class TruncatedInput(InputError):
    """A compressed input that ends before its end-of-stream marker (a copy cut short, or one still
    being written): what came before it was read, the rest is missing."""


class _HashingReader(io.RawIOBase):
    """A raw stream that hashes and counts every byte read through it."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw = raw
        self._name = name
        self.sha256 = hashlib.sha256()
        self.n_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._raw.read(len(buffer))
        except OSError as exc:  # EIO from /proc/self/mem, a vanished network file, ...
            raise InputError(f"{self._name}: cannot read ({exc.strerror or exc})") from None
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.n_bytes += n
        return n

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._raw.close()
        super().close()


class _ZstdReader(io.RawIOBase):
    """Decompresses zstd frames one after another, raising :class:`EOFError` when the input ends
    inside a frame (``zstandard``'s own stream reader returns what it has and stops silently)."""

    def __init__(self, compressed: IO[bytes]) -> None:
        import zstandard

        self._compressed = compressed
        self._zstd = zstandard.ZstdDecompressor()
        self._frame = self._zstd.decompressobj()
        self._in_frame = False
        self._out = b""
        self._at = 0

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._frame.decompress(data))
            self._in_frame = True
            if not self._frame.eof:
                break
            data = self._frame.unused_data
            self._frame = self._zstd.decompressobj()
            self._in_frame = False
        return b"".join(out)

    def readinto(self, buffer: Any) -> int:
        while self._at >= len(self._out):
            data = self._compressed.read(_ZSTD_FEED_BYTES)
            if not data:
                if self._in_frame:
                    raise EOFError("the input ends inside a zstd frame")
                return 0
            self._out, self._at = self._feed(data), 0
        n = min(len(buffer), len(self._out) - self._at)
        buffer[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n


class _Decompressed(io.RawIOBase):
    """A decompressing stream whose failures are one-line :class:`InputError` naming the file."""

    def __init__(self, stream: IO[bytes], name: str, compression: str) -> None:
        self._stream = stream
        self._name = name
        self._compression = compression

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # one decompression step at a time (read1): a step that meets the end of a cut input raises,
        # and what earlier steps made must reach the reader first (the packets before a cut)
        read = getattr(self._stream, "read1", self._stream.read)
        try:
            data = read(len(buffer))
        except EOFError:
            raise TruncatedInput(
                f"{self._name}: truncated {self._compression} input: the compressed data ends before its "
                "end-of-stream marker; the file is incomplete"
            ) from None
        except _CORRUPT as exc:
            raise InputError(
                f"{self._name}: corrupt {self._compression} input ({printable(str(exc), 120)})"
            ) from None
        except Exception as exc:
            if type(exc).__name__ != "ZstdError":
                raise
            raise InputError(f"{self._name}: corrupt zstd input ({printable(str(exc), 120)})") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


def _decompressor(magic: bytes, buffered: IO[bytes]) -> tuple[IO[bytes], str] | None:
    if magic.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb"), "gzip"
    if magic.startswith(ZSTD_MAGIC):
        return _ZstdReader(buffered), "zstd"  # type: ignore[return-value]
    if magic.startswith(BZIP2_MAGIC) and magic[3:4].isdigit():
        return bz2.BZ2File(buffered, mode="rb"), "bzip2"  # type: ignore[return-value]
    if magic.startswith(XZ_MAGIC):
        return lzma.LZMAFile(buffered, mode="rb"), "xz"  # type: ignore[return-value]
    return None


@dataclass
class InputSource:
    """One opened input: a decompressed binary stream plus what it was."""

    name: str
    stream: IO[bytes]
    compression: str
    _hashing: _HashingReader = field(repr=False)
    #: Called with the stored bytes read so far after each block (for progress displays).
    on_progress: Callable[[int], None] | None = field(default=None, repr=False)
    #: Whether a leading UTF-8 byte-order mark was dropped.
    bom: bool = False

    @property
    def size(self) -> int | None:
        """Stored size in bytes when the input is a regular file (None for stdin and pipes)."""
        if self.name == "-":
            return None
        try:
            stat = os.stat(self.name)
        except OSError:
            return None
        return stat.st_size if stat.st_size > 0 else None

    @property
    def sha256(self) -> str:
        return self._hashing.sha256.hexdigest()

    @property
    def n_bytes(self) -> int:
        """Bytes read from the file as stored (before decompression)."""
        return self._hashing.n_bytes

    def drain(self) -> None:
        """Read what is left of the stored bytes so the hash covers the whole input."""
        while self._hashing.read(1 << 20):
            pass

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "sha256": self.sha256,
            "bytes": self.n_bytes,
            "compression": self.compression,
        }

    def close(self) -> None:
        self.stream.close()
        self._hashing.close()

    def __enter__(self) -> InputSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(path: str | os.PathLike[str]) -> InputSource:
    """Open ``path`` (or ``-`` for stdin) for binary reading, decompressing gzip, zstd, bzip2 and xz
    transparently and dropping a leading UTF-8 byte-order mark.

    Raises :class:`InputError` for a missing, unreadable or non-regular input (here or on a later
    read), and on reading a truncated or corrupt compressed stream."""
    name = str(path)
    if name == "-":
        raw: IO[bytes] = sys.stdin.buffer
    else:
        p = Path(name)
        if p.is_dir():
            raise InputError(f"{name}: is a folder, not a file")
        try:
            raw = open(p, "rb")  # noqa: SIM115 - closed by InputSource.close
        except FileNotFoundError:
            raise InputError(f"{name}: no such file") from None
        except OSError as exc:
            raise InputError(f"{name}: cannot open ({exc.strerror})") from None
    hashing = _HashingReader(raw, name)
    try:
        buffered = io.BufferedReader(hashing, buffer_size=1 << 20)
        magic = buffered.peek(6)[:6]
        stream: IO[bytes]
        decompressor = _decompressor(magic, buffered)
        if decompressor is None:
            stream, compression = buffered, "none"
        else:
            decompressing, compression = decompressor
            stream = io.BufferedReader(_Decompressed(decompressing, name, compression), buffer_size=1 << 20)
        bom = stream.peek(3)[:3] == UTF8_BOM  # type: ignore[attr-defined]
    except BaseException:
        hashing.close()
        raise
    if bom:
        stream.read(3)
    return InputSource(name=name, stream=stream, compression=compression, _hashing=hashing, bom=bom)


def read_all(source: InputSource) -> bytes:
    """All decompressed bytes of a source (for formats that need random access, e.g. Parquet)."""
    data = _read(source, -1)
    source.drain()
    return data


def _read(source: InputSource, size: int) -> bytes:
    try:
        return source.stream.read(size)
    except (OSError, EOFError) as exc:  # the streams of open_input raise InputError themselves
        raise InputError(f"{source.name}: corrupt {source.compression} stream ({exc})") from None


def long_line_spans(block: bytes, limit: int) -> list[tuple[int, int]]:
    """``(start, end)`` byte offsets of the lines of ``block`` (split on ``\\n``) longer than
    ``limit`` bytes; a few ``rfind`` calls per ``limit`` bytes, not a loop over lines."""
    spans: list[tuple[int, int]] = []
    start, n = 0, len(block)
    while n - start > limit:
        last = block.rfind(b"\n", start, start + limit + 1)
        if last >= 0:  # every line ending by `last` fits; look again from the line after it
            start = last + 1
            continue
        end = block.find(b"\n", start + limit + 1)
        end = n if end < 0 else end
        spans.append((start, end))
        start = end + 1
    return spans


LongLine = Callable[[int, bytes, int], None]


def _too_long(source: InputSource, limit: int) -> LongLine:
    def refuse(number: int, head: bytes, n_bytes: int) -> None:
        raise InputError(f"{source.name}: line {number:,} is {n_bytes:,} bytes long (the limit is {limit:,})")

    return refuse


def iter_line_chunks(
    source: InputSource,
    chunk_bytes: int = CHUNK_BYTES,
    *,
    max_line_bytes: int | None = None,
    on_long_line: LongLine | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(number of the block's first line, block)``: whole lines joined by ``\\n``, without the
    final newline. Lines never straddle blocks; line numbers start at 1.

    A line longer than ``max_line_bytes`` (default :data:`MAX_RECORD_BYTES`) is in no block (the
    blocks around it say where they start): ``on_long_line(number, first bytes, length)`` is called
    for it instead, and the rest of it is read past without being kept. Without ``on_long_line``
    such a line raises :class:`InputError`.
    """
    if max_line_bytes is None:
        max_line_bytes = MAX_RECORD_BYTES
    report = on_long_line or _too_long(source, max_line_bytes)
    next_line = 1
    tail = b""
    skipping: list[Any] | None = None  # [number, first bytes, length so far] of a long line
    while True:
        data = _read(source, chunk_bytes)
        if not data:
            break
        if source.on_progress is not None:
            source.on_progress(source.n_bytes)
        if skipping is not None:
            cut = data.find(b"\n")
            if cut < 0:
                skipping[2] += len(data)
                continue
            report(skipping[0], skipping[1], skipping[2] + cut)
            skipping = None
            next_line += 1
            data = data[cut + 1 :]
        data = tail + data
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
        else:
            tail = data[cut + 1 :]
            block = data[:cut]
            yield from _split_long_lines(block, next_line, max_line_bytes, report)
            next_line += block.count(b"\n") + 1
        if len(tail) > max_line_bytes:
            skipping = [next_line, tail[:LONG_LINE_EXCERPT_BYTES], len(tail)]
            tail = b""
    if skipping is not None:
        report(skipping[0], skipping[1], skipping[2])
    elif tail:
        yield next_line, tail
    source.drain()


def _split_long_lines(block: bytes, first: int, limit: int, report: LongLine) -> Iterator[tuple[int, bytes]]:
    spans = long_line_spans(block, limit)
    if not spans:
        yield first, block
        return
    position, line = 0, first
    for start, end in spans:
        if start > position:
            piece = block[position : start - 1]
            yield line, piece
            line += piece.count(b"\n") + 1
        report(line, block[start : start + LONG_LINE_EXCERPT_BYTES], end - start)
        line += 1
        position = end + 1
    if position <= len(block):
        yield line, block[position:]

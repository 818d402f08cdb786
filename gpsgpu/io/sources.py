"""Opening inputs: a path or ``-`` (stdin), plain, gzip or zstd (detected by magic bytes).

The SHA-256 of the bytes as stored (compressed or not) is computed while reading, for
``metadata.json``; nothing is read twice, so stdin works the same as a file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gpsgpu.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PARQUET_MAGIC = b"PAR1"

#: Lines are handed to parsers in chunks of about this many bytes.
CHUNK_BYTES = 16 << 20


class _HashingReader(io.RawIOBase):
    """A raw stream that hashes and counts every byte read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.n_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.n_bytes += n
        return n

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._raw.close()
        super().close()


@dataclass
class InputSource:
    """One opened input: a decompressed binary stream plus what it was."""

    name: str
    stream: IO[bytes]
    compression: str
    _hashing: _HashingReader = field(repr=False)
    #: Called with the stored bytes read so far after each block (for progress displays).
    on_progress: Callable[[int], None] | None = field(default=None, repr=False)

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
    """Open ``path`` (or ``-`` for stdin) for binary reading, decompressing gzip and zstd transparently."""
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
    hashing = _HashingReader(raw)
    buffered = io.BufferedReader(hashing, buffer_size=1 << 20)
    magic = buffered.peek(4)[:4]
    stream: IO[bytes]
    if magic.startswith(GZIP_MAGIC):
        stream, compression = gzip.GzipFile(fileobj=buffered, mode="rb"), "gzip"
    elif magic.startswith(ZSTD_MAGIC):
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)  # type: ignore[assignment]
        compression = "zstd"
    else:
        stream, compression = buffered, "none"
    return InputSource(name=name, stream=stream, compression=compression, _hashing=hashing)


def read_all(source: InputSource) -> bytes:
    """All decompressed bytes of a source (for formats that need random access, e.g. Parquet)."""
    try:
        data = source.stream.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"{source.name}: corrupt {source.compression} stream ({exc})") from None
    source.drain()
    return data


def iter_line_chunks(source: InputSource, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield ``(number of the block's first line, block)``: whole lines joined by ``\\n``, without the
    final newline. Lines never straddle blocks; line numbers start at 1."""
    next_line = 1
    tail = b""
    while True:
        try:
            data = source.stream.read(chunk_bytes)
        except (OSError, EOFError) as exc:
            raise InputError(f"{source.name}: corrupt {source.compression} stream ({exc})") from None
        if not data:
            break
        if source.on_progress is not None:
            source.on_progress(source.n_bytes)
        data = tail + data
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
            continue
        tail = data[cut + 1 :]
        block = data[:cut]
        yield next_line, block
        next_line += block.count(b"\n") + 1
    if tail:
        yield next_line, tail
    source.drain()

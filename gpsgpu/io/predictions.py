"""``PRED/``: predicted services as sharded Parquet and, optionally, a scanner's target list.

Shards are ``parts/part-00000.parquet``, ... (``ip uint32, port uint16, score float32``), one per
partition of the priors scan, written as they are made so the whole output never sits in memory;
``pyarrow.parquet.read_table("PRED/parts")`` (or DuckDB's ``'PRED/parts/*.parquet'``) reads them all.
``--export`` adds ``predictions.txt`` in a scanner's input format (a campaign's rounds may also keep
the predictions held back, ``held.parquet``):

- ``gps``: ``ip:port`` (what LZR took in 2022, and the reference's output);
- ``lzr``: ``ip;port`` (newer LZR);
- ``zgrab2``: ``ip,,,port`` (ZGrab2's CSV input: ip, domain, tag, port).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gpsgpu import schema
from gpsgpu.errors import InputError
from gpsgpu.io.parquet import one_line, read_table, write_table
from gpsgpu.io.runs import ParquetStream, read_batches

EXPORT_FILE = "predictions.txt"
SHARDS_DIR = "parts"
HELD_FILE = "held.parquet"
SEPARATORS = {"gps": ":", "lzr": ";", "zgrab2": ",,,"}


def dotted(ip: np.ndarray) -> pa.Array:
    """Dotted-quad strings of host-order uint32 addresses (vectorized with Arrow)."""
    ip = np.asarray(ip, np.uint32)
    parts: list[Any] = [
        pc.cast(pa.array((ip >> np.uint32(shift)) & np.uint32(0xFF)), pa.string()) for shift in (24, 16, 8, 0)
    ]
    return pc.binary_join_element_wise(*parts, ".")


def format_targets(
    ip: np.ndarray, port: np.ndarray, export: str, *, addresses: pa.Array | None = None
) -> pa.Array:
    """``ip<sep>port`` strings (vectorized with Arrow); ``addresses``: ``dotted(ip)`` if already made."""
    addresses = dotted(ip) if addresses is None else addresses
    return pc.binary_join_element_wise(addresses, pc.cast(pa.array(port), pa.string()), SEPARATORS[export])


def text_lines(strings: pa.Array) -> bytes:
    """The strings as text lines, each ended by a newline, in one buffer (no Python string per line)."""
    if len(strings) == 0:
        return b""
    # "s" joined with "" by a newline is "s\n"; large strings keep 64-bit offsets past 2 GiB.
    text = pa.large_string()
    ended = pc.binary_join_element_wise(strings.cast(text), pa.scalar("", text), pa.scalar("\n", text))
    offsets = np.frombuffer(ended.buffers()[1], np.int64, len(ended) + 1, offset=ended.offset * 8)
    data = ended.buffers()[2]
    return data.to_pybytes()[int(offsets[0]) : int(offsets[-1])]


class PredictionWriter:
    """Writes shards into a folder and, with ``export``, appends their targets to one text file."""

    def __init__(self, directory: str | Path, *, export: str | None = None) -> None:
        self.directory = Path(directory)
        self.export = export
        self.n_shards = 0
        self.n_predictions = 0
        self._text: IO[str] | None = None
        self._stream: ParquetStream | None = None
        if export is not None:
            self._text = open(self.directory / EXPORT_FILE, "w", encoding="ascii", newline="\n")  # noqa: SIM115

    def write(self, predictions: Any) -> None:
        """Append one shard: a frame ``ip uint32, port uint16, score float32`` (+ ``n_rules uint32,
        round uint16`` in improved mode)."""
        # Improved mode's predictions also carry the rules behind them and their round.
        extra = [c for c in (schema.N_RULES, schema.ROUND) if c in predictions.columns]
        table = schema.frame_to_arrow(predictions[[schema.IP, schema.PORT, schema.SCORE, *extra]])
        write_table(table, self.directory / SHARDS_DIR / f"part-{self.n_shards:05d}.parquet")
        self.n_shards += 1
        self.n_predictions += table.num_rows
        if self._text is not None and table.num_rows:
            ip = np.asarray(table[schema.IP]).astype(np.uint32)
            port = np.asarray(table[schema.PORT]).astype(np.uint16)
            self._text.write(text_lines(format_targets(ip, port, self.export or "gps")).decode("ascii"))

    def append(self, predictions: Any, *, empty: Any) -> None:
        """Append rows to the shard being streamed (a new shard at the first call after
        :meth:`end_shard`): the shard :meth:`write` makes of all the rows appended, byte for byte,
        without them in memory at once. ``empty``: a frame of the shard's columns (no rows)."""
        if self._stream is None:
            extra = [c for c in (schema.N_RULES, schema.ROUND) if c in empty.columns]
            columns = [schema.IP, schema.PORT, schema.SCORE, *extra]
            path = self.directory / SHARDS_DIR / f"part-{self.n_shards:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = ParquetStream(path, empty[columns])
        self._stream.write(predictions)
        self.n_predictions += len(predictions)
        self._export(predictions)

    def end_shard(self) -> None:
        """Put the shard being streamed in place."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
            self.n_shards += 1

    def _export(self, predictions: Any) -> None:
        if self._text is not None and len(predictions):
            ip = np.asarray(predictions[schema.IP]).astype(np.uint32)
            port = np.asarray(predictions[schema.PORT]).astype(np.uint16)
            self._text.write(text_lines(format_targets(ip, port, self.export or "gps")).decode("ascii"))

    def close(self) -> None:
        self.end_shard()
        if self._text is not None:
            self._text.close()
            self._text = None

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is not None and self._stream is not None:
            self._stream.abort()
            self._stream = None
        self.close()


def _read_shards(folder: str | Path, columns: list[str], what: str) -> list[pa.Table]:
    shards = Path(folder) / SHARDS_DIR
    if not shards.is_dir():
        raise InputError(
            f"{what}{folder}: no {SHARDS_DIR}/ folder; is this a folder written by 'gpsgpu predict'?"
        )
    # each shard read through read_table: a truncated or corrupt one is one line naming it
    return [read_table(f, columns=columns) for f in sorted(shards.glob("*.parquet"))]


def read_targets(folder: str | Path, *, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``ip uint32, port uint16`` of every prediction in a ``PRED/`` folder (shard order); ``what``
    prefixes the error message (the flag that named the folder)."""
    ips, ports = [np.zeros(0, np.uint32)], [np.zeros(0, np.uint16)]
    for t in _read_shards(folder, [schema.IP, schema.PORT], what):
        ips.append(np.asarray(t[schema.IP]).astype(np.uint32))
        ports.append(np.asarray(t[schema.PORT]).astype(np.uint16))
    return np.concatenate(ips), np.concatenate(ports)


def read_scores(folder: str | Path, *, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Service keys (``ip << 16 | port``, uint64) and scores (float32) of every prediction in a
    ``PRED/`` folder of an improved model (shard order)."""
    keys, scores = [np.zeros(0, np.uint64)], [np.zeros(0, np.float32)]
    for t in _read_shards(folder, [schema.IP, schema.PORT, schema.SCORE], what):
        ip, port = np.asarray(t[schema.IP]).astype(np.uint32), np.asarray(t[schema.PORT]).astype(np.uint16)
        keys.append(schema.pack_service(ip, port))
        scores.append(np.asarray(t[schema.SCORE]).astype(np.float32))
    return np.concatenate(keys), np.concatenate(scores)


def write_held(predictions: pd.DataFrame, directory: str | Path) -> str:
    """``PRED/held.parquet``: predictions held back by ``--min-score`` (``ip, port, score, n_rules``)."""
    columns = [c for c in (schema.IP, schema.PORT, schema.SCORE, schema.N_RULES) if c in predictions.columns]
    table = schema.frame_to_arrow(predictions[columns].reset_index(drop=True))
    write_table(table, Path(directory) / HELD_FILE)
    return HELD_FILE


def held_stream(directory: str | Path, name: str = HELD_FILE) -> ParquetStream:
    """A held-back table streamed to disk a frame at a time (:func:`write_held`'s file, byte for
    byte, of the rows written); ``name`` another file name in ``directory`` (a round's, moved to
    ``held.parquet`` at the end)."""
    empty = pd.DataFrame(
        {
            schema.IP: np.zeros(0, np.uint32),
            schema.PORT: np.zeros(0, np.uint16),
            schema.SCORE: np.zeros(0, np.float32),
            schema.N_RULES: np.zeros(0, np.uint32),
        }
    )
    return ParquetStream(Path(directory) / name, empty)


def held_path(folder: str | Path) -> Path | None:
    """A ``PRED/`` folder's held-back table (None when it holds none back); it is read a batch at
    a time (:func:`read_held_batches`)."""
    path = Path(folder) / HELD_FILE
    if not path.is_file():
        return None
    read_table(path, columns=[])  # a truncated or corrupt file: one line naming it, before any work
    return path


def read_held_keys(path: str | Path) -> np.ndarray:
    """Service keys (``ip << 16 | port``, uint64) of a held-back table, in its order."""
    table = read_table(path, columns=[schema.IP, schema.PORT])
    ip = np.asarray(table[schema.IP]).astype(np.uint32)
    return schema.pack_service(ip, np.asarray(table[schema.PORT]).astype(np.uint16))


def read_held_batches(path: str | Path, *, batch_rows: int = 1 << 20) -> Iterator[Any]:
    """The rows of a held-back table as frames of at most ``batch_rows`` rows, in order (a page that
    cannot be read: one line naming the file)."""
    try:
        yield from read_batches(path, batch_rows=batch_rows)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet table ({one_line(exc)})") from None


def read_held(folder: str | Path) -> pd.DataFrame | None:
    """The predictions a ``PRED/`` folder held back (None when it holds none back)."""
    path = Path(folder) / HELD_FILE
    return read_table(path).to_pandas() if path.is_file() else None

"""Parquet tables on disk: written atomically with zstd, read onto the requested backend."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gpsgpu import schema
from gpsgpu.backend import Backend
from gpsgpu.errors import InputError
from gpsgpu.io.atomic import atomic_path
from gpsgpu.io.outputs import PARQUET_METADATA_KEY
from gpsgpu.io.sources import printable

COMPRESSION = "zstd"
#: The parts of gpsgpu's metadata a table's footer keeps (deterministic: no times, hosts, versions
#: of other libraries); the full record is the ``NAME.metadata.json`` sidecar.
FOOTER_KEYS = ("tool", "version", "command", "config", "inputs", "counts")


def write_table(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    row_group_size: int = 1 << 20,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write an Arrow table as Parquet (zstd), atomically.

    ``metadata`` (gpsgpu's record of the run) goes into the file's footer, so a table and the record
    of what wrote it are replaced together, in one rename.
    """
    path = Path(path)
    if metadata is not None:
        footer = dict(table.schema.metadata or {})
        # Only what the run was (not when, where or how long), so the same run writes the same bytes.
        recorded = {k: metadata[k] for k in FOOTER_KEYS if k in metadata}
        footer[PARQUET_METADATA_KEY] = json.dumps(recorded, default=str, sort_keys=True).encode()
        table = table.replace_schema_metadata(footer)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=COMPRESSION, row_group_size=row_group_size)
    return path


def write_frame(frame: Any, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None) -> Path:
    """Write a pandas or cuDF frame as Parquet, atomically (through Arrow, so both give one file)."""
    return write_table(schema.frame_to_arrow(frame), path, metadata=metadata)


def read_table(path: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:  # truncated, corrupt, unreadable, missing columns
        raise InputError(f"{path}: not a readable Parquet table ({one_line(exc)})") from None


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message as one short line for :class:`InputError` (Arrow's can run to many
    lines; what they quote of a file is escaped when it holds control characters)."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    text = lines[0][:limit]
    return text if text.isprintable() else printable(text, limit)


def read_frame(path: str | os.PathLike[str], backend: Backend, columns: list[str] | None = None) -> Any:
    return schema.frame_from_arrow(read_table(path, columns), backend.xdf)


def write_services(
    frame: Any, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a services frame with the canonical schema (same bytes from pandas or cuDF)."""
    return write_table(schema.services_to_arrow(frame), path, metadata=metadata)


def read_services(path: str | os.PathLike[str], backend: Backend) -> Any:
    """Read a services Parquet table (as written by ``gpsgpu ingest``) onto ``backend``."""
    table = read_table(path)
    try:
        return schema.services_from_arrow(table, backend.xdf)
    except (ValueError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: {exc}") from None

"""Tables streamed to disk: one Parquet file written a frame at a time, and sorted runs of a merge.

Improved predict ranks tens of millions of predictions; they never sit in memory as one table.
Each host partition's ranked predictions are a sorted run, a Parquet file in a folder of the
output's temporary folder (removed before the output is renamed into place); the merge
(:func:`gpsgpu.predict.ranked.merge_ranked`) reads the runs back a batch at a time and the ranked
rows go to a :class:`ParquetStream`, which cuts row groups exactly where
:func:`gpsgpu.io.parquet.write_table` cuts them in the whole table: the file has the same bytes.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gpsgpu import schema
from gpsgpu.io.atomic import atomic_path
from gpsgpu.io.parquet import COMPRESSION

#: Row groups of a written table (:func:`gpsgpu.io.parquet.write_table`'s default).
ROW_GROUP_ROWS = 1 << 20
#: Runs are read back and written in batches of this many rows.
RUN_BATCH_ROWS = 1 << 18


class ParquetStream:
    """One Parquet file appended a frame at a time: the file :func:`gpsgpu.io.parquet.write_table`
    writes of the frames' concatenation (same row groups, same bytes), written atomically on
    :meth:`close`, without the whole table in memory (at most one row group is buffered).

    ``empty`` is a frame of the file's columns and dtypes (no rows): it fixes the schema.
    """

    def __init__(
        self,
        path: str | Path,
        empty: Any,
        *,
        compression: str = COMPRESSION,
        row_group_size: int = ROW_GROUP_ROWS,
    ) -> None:
        self.path = Path(path)
        self.columns = list(empty.columns)
        self.n_rows = 0
        self._empty = schema.frame_to_arrow(empty)
        self._row_group_size = row_group_size
        self._pending: list[pa.Table] = []
        self._n_pending = 0
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, self._empty.schema, compression=compression)

    def write(self, frame: Any) -> None:
        """Append a frame's rows (its columns in this file's order)."""
        if len(frame) == 0:
            return
        self._pending.append(schema.frame_to_arrow(frame[self.columns]))
        self._n_pending += len(frame)
        self.n_rows += len(frame)
        while self._n_pending >= self._row_group_size:
            self._flush(self._row_group_size)

    def _flush(self, n: int) -> None:
        # One chunk per column, as the whole table written at once would have.
        table = pa.concat_tables(self._pending).combine_chunks()
        self._writer.write_table(table.slice(0, n), row_group_size=self._row_group_size)
        rest = table.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._n_pending = rest.num_rows

    def close(self) -> None:
        """Write what is left and put the file in place."""
        if self._writer is None:
            return
        if self._n_pending:
            self._flush(self._n_pending)
        if self.n_rows == 0:  # write_table writes one empty row group
            self._writer.write_table(self._empty, row_group_size=self._row_group_size)
        self._writer.close()
        self._writer = None
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the file (an error came up)."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        with contextlib.suppress(RuntimeError):  # the temporary file is removed
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> ParquetStream:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def read_batches(path: str | Path, *, batch_rows: int = RUN_BATCH_ROWS) -> Iterator[Any]:
    """The rows of a Parquet file as pandas frames of at most ``batch_rows`` rows, in order."""
    source = pq.ParquetFile(path)
    try:
        for batch in source.iter_batches(batch_size=batch_rows):
            yield batch.to_pandas()
    finally:
        source.close()


class RunStore:
    """Sorted runs of one merge, each an uncompressed Parquet file in ``directory`` (created here,
    removed by :meth:`close`)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=False)
        self.paths: list[Path] = []
        self.n_rows = 0

    def add(self, frame: Any) -> None:
        """Write one run (a frame in its sorted order); empty frames are skipped."""
        if len(frame) == 0:
            return
        path = self.directory / f"run-{len(self.paths):05d}.parquet"
        pq.write_table(schema.frame_to_arrow(frame), path, compression="none", row_group_size=RUN_BATCH_ROWS)
        self.paths.append(path)
        self.n_rows += len(frame)

    def readers(self, *, batch_rows: int = RUN_BATCH_ROWS) -> list[Iterator[Any]]:
        """One iterator of frames per run, read a batch at a time."""
        return [read_batches(path, batch_rows=batch_rows) for path in self.paths]

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ROW_GROUP_ROWS", "RUN_BATCH_ROWS", "ParquetStream", "RunStore", "read_batches"]

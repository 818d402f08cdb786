"""A services Parquet table read one host partition at a time (out of core).

:class:`ParquetHostPartitions` never holds the whole table: for partition ``k`` of ``n`` it streams
the file's record batches (row group by row group), keeps the rows whose address falls in partition
``k`` (:func:`gpsgpu.partition.partition_of`) and makes one frame of them. Its partitions are the
frames :func:`gpsgpu.partition.split_by_host` makes of the whole table (same rows, same order, same
dtypes), so a stage gives the same result from either; peak memory is one partition plus one batch.
The price is one pass over the file per partition (one pass in all when ``n`` is 1).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpsgpu import schema
from gpsgpu.backend import Backend
from gpsgpu.errors import InputError
from gpsgpu.io.parquet import read_table
from gpsgpu.ops.cpu import release_memory
from gpsgpu.partition import HostPartitions, PartitionReader, partition_of

#: Rows decoded at once while a partition is gathered.
BATCH_ROWS = 1 << 17


class ParquetHostPartitions(HostPartitions):
    """The host partitions of a services Parquet file (as ``gpsgpu ingest`` writes it).

    Parameters
    ----------
    path : a services table.
    backend : where the partitions' frames go (pandas or cuDF).
    batch_rows : rows decoded at once (memory of the stream beside the partition).
    """

    def __init__(
        self, path: str | os.PathLike[str], backend: Backend, *, batch_rows: int = BATCH_ROWS
    ) -> None:
        self.path = Path(path)
        self.backend = backend
        self.batch_rows = batch_rows
        try:
            self._file = pq.ParquetFile(self.path)
            # The schema is checked once here, on no rows, so a bad table fails before any work.
            empty = self._file.schema_arrow.empty_table()
            schema.services_from_arrow(empty, Backend.CPU.xdf)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.path}: not a readable Parquet table ({exc})") from None
        except ValueError as exc:
            raise InputError(f"{self.path}: {exc}") from None
        self._rows = int(self._file.metadata.num_rows)
        #: Bytes of the columns copied to the device so far (GPU backend) by this process's reads.
        self.bytes_to_device = 0
        #: Whether readers were handed out (partitions read elsewhere, their bytes not counted here).
        self.read_elsewhere = False

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return f"ParquetHostPartitions({str(self.path)!r}, rows={self._rows:,}, backend={self.backend.value})"

    def _frame(self, table: pa.Table) -> Any:
        if self.backend is Backend.GPU:
            self.bytes_to_device += int(table.nbytes)
        else:
            # One chunk per column (the reader's batches combined once, here): the stages take a
            # string column as one array, and would otherwise copy it whole beside the table.
            table = table.combine_chunks()
        try:
            return schema.services_from_arrow(table, self.backend.xdf)
        except (ValueError, pa.ArrowInvalid) as exc:
            raise InputError(f"{self.path}: {exc}") from None

    def partitions(self, n_partitions: int) -> Iterator[Any]:
        if n_partitions < 1:
            raise ValueError(f"n_partitions must be >= 1, not {n_partitions}")
        for k in range(n_partitions):
            frame = self.partition(k, n_partitions)
            yield frame
            del frame

    def readers(self, n_partitions: int) -> list[PartitionReader]:
        n = n_partitions
        if n < 1:
            raise ValueError(f"n_partitions must be >= 1, not {n}")
        self.read_elsewhere = True
        path = self.path.resolve()  # a worker's working folder may differ
        return [ParquetPartition(path, self.backend, k, n, self.batch_rows) for k in range(n_partitions)]

    def partition(self, index: int, n_partitions: int) -> Any:
        """Partition ``index`` of ``n_partitions`` (one pass over the file; the whole table when
        ``n_partitions`` is 1)."""
        if n_partitions == 1:
            frame = self._frame(read_table(self.path))
            # The decoder's buffers (twice the table on net16) leave the resident set here too.
            release_memory()
            return frame
        batches = []
        try:
            for batch in self._file.iter_batches(batch_size=self.batch_rows, use_threads=True):
                ip = batch.column(schema.IP).to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)
                keep = partition_of(ip, n_partitions) == index
                if keep.any():
                    batches.append(batch.filter(pa.array(keep)))
        except (pa.ArrowInvalid, OSError) as exc:  # a page cut or garbled past the footer
            raise InputError(f"{self.path}: not a readable Parquet table ({exc})") from None
        frame = self._frame(pa.Table.from_batches(batches, schema=self._file.schema_arrow))
        del batches
        # The decoder's and the filter's buffers go back to the system before the partition is
        # used: otherwise each partition read leaves them resident (bench/RESULTS.md, 2026-12-05:
        # learn --partitions 4 on 2 workers, 870 MB largest process without this, 669 MB with it).
        release_memory()
        return frame


@dataclasses.dataclass(frozen=True)
class ParquetPartition(PartitionReader):
    """Partition ``index`` of ``n_partitions`` of a services Parquet file, read when called (by
    the Dask worker that works on it)."""

    path: Path
    backend: Backend
    index: int
    n_partitions: int
    batch_rows: int = BATCH_ROWS

    def __call__(self) -> Any:
        source = ParquetHostPartitions(self.path, self.backend, batch_rows=self.batch_rows)
        return source.partition(self.index, self.n_partitions)

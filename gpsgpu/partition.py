"""Partitioning tables by host, so per-host work (pair counting, predictions) splits cleanly.

The partition of an address is a fixed integer mix of the address (Fibonacci hashing), never a
dataframe library's hash (pandas and cuDF hash differently), so every backend and every run puts
a host in the same partition.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any

from gpsgpu import schema
from gpsgpu.backend import Backend, xp_of

_GOLDEN32 = 0x9E3779B1


def partition_of(ip: Any, n_partitions: int) -> Any:
    """Partition number (int64) of each address: ``((ip * 0x9E3779B1) mod 2**32 >> 8) % n``."""
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1, not {n_partitions}")
    xp = xp_of(ip)
    mixed = (ip.astype(xp.uint64) * xp.uint64(_GOLDEN32)) & xp.uint64(0xFFFFFFFF)
    return ((mixed >> xp.uint64(8)) % xp.uint64(n_partitions)).astype(xp.int64)


class HostPartitions(abc.ABC):
    """A table too big to hold at once that yields its host partitions one by one (out of core).

    ``partitions(n)`` yields the same frames, in the same order, as :func:`split_by_host` of the
    whole table (rows of a partition in table order), so results do not change.
    """

    #: The backend the partitions' frames are on.
    backend: Backend

    @abc.abstractmethod
    def __len__(self) -> int:
        """Rows of the whole table."""

    @abc.abstractmethod
    def partitions(self, n_partitions: int) -> Iterator[Any]:
        """The table's rows in ``n_partitions`` host partitions (frames on :attr:`backend`)."""


def split_by_host(frame: Any, /, *, n_partitions: int) -> Iterator[Any]:
    """Yield ``n_partitions`` frames of ``frame``'s rows (every row of a host in the same one).

    Parameters
    ----------
    frame : frame with an ``ip uint32`` column, or a :class:`HostPartitions` (read partition by
        partition, never whole)
    n_partitions : int
    """
    if isinstance(frame, HostPartitions):
        yield from frame.partitions(n_partitions)
        return
    if n_partitions == 1:
        yield frame
        return
    column = frame[schema.IP]
    ip = column.to_cupy() if hasattr(column, "to_cupy") else column.to_numpy()
    part = partition_of(ip, n_partitions)
    for k in range(n_partitions):
        yield frame[part == k].reset_index(drop=True)

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


class PartitionReader(abc.ABC):
    """One host partition of a :class:`HostPartitions`, read where it is called.

    A worker that shares this machine's files reads its own partition instead of receiving it from
    the client (:meth:`gpsgpu.distributed.Mapper.partitions`): the partition is never in the
    client's memory nor on the wire. Small and picklable; calling it gives the partition's frame.
    """

    @abc.abstractmethod
    def __call__(self) -> Any:
        """The partition's frame (the one :meth:`HostPartitions.partitions` yields at its place)."""


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

    def readers(self, n_partitions: int) -> list[PartitionReader] | None:
        """A reader of each of the ``n_partitions`` partitions, to be read elsewhere; None when the
        partitions can only be read here (then :meth:`partitions` is used)."""
        return None


def split_by_host(frame: Any, /, *, n_partitions: int, readers: bool = False) -> Iterator[Any]:
    """Yield ``n_partitions`` frames of ``frame``'s rows (every row of a host in the same one).

    Parameters
    ----------
    frame : frame with an ``ip uint32`` column, or a :class:`HostPartitions` (read partition by
        partition, never whole)
    n_partitions : int
    readers : bool
        Yield a :class:`PartitionReader` in place of each partition where ``frame`` can make them
        (the partitions are then read by whoever calls them).
    """
    if isinstance(frame, HostPartitions):
        made = frame.readers(n_partitions) if readers else None
        yield from frame.partitions(n_partitions) if made is None else made
        return
    if n_partitions == 1:
        yield frame
        return
    column = frame[schema.IP]
    ip = column.to_cupy() if hasattr(column, "to_cupy") else column.to_numpy()
    part = partition_of(ip, n_partitions)
    for k in range(n_partitions):
        yield frame[part == k].reset_index(drop=True)

"""Partitioning tables by host, so per-host work (pair counting, predictions) splits cleanly.

The partition of an address is a fixed integer mix of the address (Fibonacci hashing), never a
dataframe library's hash (pandas and cuDF hash differently), so every backend and every run puts
a host in the same partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gpsgpu import schema
from gpsgpu.backend import xp_of

_GOLDEN32 = 0x9E3779B1


def partition_of(ip: Any, n_partitions: int) -> Any:
    """Partition number (int64) of each address: ``((ip * 0x9E3779B1) mod 2**32 >> 8) % n``."""
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1, not {n_partitions}")
    xp = xp_of(ip)
    mixed = (ip.astype(xp.uint64) * xp.uint64(_GOLDEN32)) & xp.uint64(0xFFFFFFFF)
    return ((mixed >> xp.uint64(8)) % xp.uint64(n_partitions)).astype(xp.int64)


def split_by_host(frame: Any, /, *, n_partitions: int) -> Iterator[Any]:
    """Yield ``n_partitions`` frames of ``frame``'s rows (every row of a host in the same one).

    Parameters
    ----------
    frame : frame with an ``ip uint32`` column
    n_partitions : int
    """
    if n_partitions == 1:
        yield frame
        return
    column = frame[schema.IP]
    ip = column.to_cupy() if hasattr(column, "to_cupy") else column.to_numpy()
    part = partition_of(ip, n_partitions)
    for k in range(n_partitions):
        yield frame[part == k].reset_index(drop=True)

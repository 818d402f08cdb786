"""NumPy implementations of the engine's array primitives: the specification of ``ops/gpu.py``.

Every function here has a twin of the same name in :mod:`gpsgpu.ops.gpu`; the two CUDA kernels
(``kernels/expand_pairs.cu``, ``kernels/best_predictor.cu``) must give exactly what
:func:`expand_pairs` and :func:`best_predictor` give.

The pair functions share one layout, the *host CSR* of a partition:

- services ("slots"), a host's slots contiguous and sorted by port: ``slot_port`` (uint16),
  ``slot_first`` (int64, the index of the first slot of the slot's host) and ``slot_count`` (int64,
  the host's number of slots);
- feature rows: ``row_slot`` (int64, the slot the feature belongs to) and ``row_fid`` (uint32, a
  dense feature id; the learn step passes its global ids).

The pair ``(row i, slot t)`` exists for every slot ``t`` of the row's host other than its own; its
*pair key* is ``fid << 32 | port(row) << 16 | port(t)`` (:data:`gpsgpu.schema.PAIR_FID_SHIFT`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

#: "No candidate" in :func:`best_predictor`'s output.
NO_RANK = np.uint32(0xFFFFFFFF)

_U64 = np.uint64


# --- XXH64 ----------------------------------------------------------------------------------------


def string_buffers(strings: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets int64[n+1], data uint8)`` of an Arrow string/binary array (nulls read as empty)."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks() if strings.num_chunks != 1 else strings.chunk(0)
    if not isinstance(strings, pa.Array):
        strings = pa.array(strings, type=pa.large_string())
    if pa.types.is_string(strings.type):
        strings = strings.cast(pa.large_string())
    elif pa.types.is_binary(strings.type):
        strings = strings.cast(pa.large_binary())
    _, offsets_buf, data_buf = strings.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[strings.offset : strings.offset + len(strings) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    if strings.null_count:
        # A null's offsets may still span bytes; read it as the empty string.
        valid = np.asarray(strings.is_valid())
        starts = offsets[:-1].copy()
        ends = np.where(valid, offsets[1:], starts)
        return _compact(starts, ends, data)
    return offsets, data


def _compact(starts: np.ndarray, ends: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lengths = ends - starts
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    return offsets, data[index]


def xxh64_strings(strings: Any, seed: int = 0) -> np.ndarray:
    """XXH64 of every string's UTF-8 bytes: ``xxhash.xxh64_intdigest(s, seed)`` for each.

    Parameters
    ----------
    strings : pyarrow string/binary array (or anything ``pa.array`` accepts)
        Nulls hash as the empty string.
    seed : int
        The XXH64 seed (the engine always uses :data:`gpsgpu.schema.FKEY_SEED`).

    Returns
    -------
    numpy.ndarray of uint64, one per string.
    """
    import xxhash

    offsets, data = string_buffers(strings)
    n = offsets.size - 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    # Slicing one bytes object by the Arrow offsets and mapping the C hash over it costs about
    # 120 ns a string, 4x less than a vectorized NumPy XXH64 (whose 64-bit multiplies and unaligned
    # gathers each make a pass over memory).
    blob = data.tobytes()
    bounds = offsets.tolist()
    pieces = map(blob.__getitem__, map(slice, bounds[:-1], bounds[1:]))
    hash_one = xxhash.xxh64_intdigest if seed == 0 else functools.partial(xxhash.xxh64_intdigest, seed=seed)
    return np.fromiter(map(hash_one, pieces), dtype=np.uint64, count=n)


# --- pair expansion (twins of kernels/expand_pairs.cu and kernels/best_predictor.cu) --------------


def pair_offsets(row_slot: np.ndarray, slot_count: np.ndarray) -> np.ndarray:
    """Where each row's pairs start in block order (see :func:`_pair_blocks`): int64[n_rows].

    A row's offset is the pairs of every row of a smaller ``k``, plus ``k - 1`` times the number of
    earlier rows with its ``k``.
    """
    per_row = slot_count[row_slot].astype(np.int64) - 1
    starts = np.zeros(row_slot.size, dtype=np.int64)
    before = 0
    for k1 in range(1, int(per_row.max(initial=0)) + 1):
        mask = per_row == k1
        rank = np.cumsum(mask) - 1
        starts = np.where(mask, before + rank * k1, starts)
        before += int(mask.sum()) * k1
    return starts


class HostTable(NamedTuple):
    """Per slot, the host's other slots and their ports (see :func:`host_table`)."""

    other: np.ndarray  # int32/int64[n_slots, max_k - 1]
    port: np.ndarray  # uint16[n_slots, max_k - 1]


def host_table(slot_port: np.ndarray, slot_first: np.ndarray, slot_count: np.ndarray) -> HostTable:
    """:class:`HostTable` of a host CSR. Callers expanding several chunks of one partition build it
    once and pass it to :func:`expand_pairs` / :func:`best_predictor`; uint16 ports keep the
    per-slot table small enough for the cache."""
    other = other_slots(slot_first, slot_count)
    return HostTable(other, slot_port[other])


def other_slots(slot_first: np.ndarray, slot_count: np.ndarray) -> np.ndarray:
    """``other[s, j]``: the ``j``-th slot of ``s``'s host other than ``s``.

    Returns int32[n_slots, max_k - 1] (int64 past 2**31 slots); entries past ``slot_count[s] - 2``
    are clipped filler that no caller reads.
    """
    width = max(int(slot_count.max(initial=1)) - 1, 1)
    dtype = np.int32 if slot_first.size < 1 << 31 else np.int64
    own = (np.arange(slot_first.size, dtype=np.int64) - slot_first).astype(dtype)
    j = np.arange(width, dtype=dtype)
    other = slot_first.astype(dtype)[:, None] + j[None, :] + (j[None, :] >= own[:, None])
    return np.minimum(other, max(slot_first.size - 1, 0)).astype(dtype, copy=False)


def _pair_blocks(
    row_slot: np.ndarray,
    row_fid: np.ndarray,
    slot_port: np.ndarray,
    slot_first: np.ndarray,
    slot_count: np.ndarray,
    *,
    targets: bool = False,
    host: HostTable | None = None,
    out: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The pairs of the rows in *block order*, one block per port count ``k``.

    Block order (what :func:`pair_offsets` describes, and the kernels reproduce): rows grouped by
    their host's number of ports ``k`` ascending, rows of one group in input order, each row's
    ``k - 1`` pairs in its host's slot order with its own slot skipped. Rows of one ``k`` expand as
    one 2-D gather from a per-slot table of the host's other slots, with no ragged index arithmetic.

    Yields ``(keys uint64[n_k, k - 1], target slots [n_k, k - 1] or None)``; with ``out`` (uint64
    of the total number of pairs) the key blocks are views of its consecutive slices, so the whole
    expansion is written in place, without a final concatenation.
    """
    if row_slot.size == 0:
        return
    other, other_port = host if host is not None else host_table(slot_port, slot_first, slot_count)
    count = slot_count[row_slot]
    base = (row_fid.astype(np.uint64) << _U64(32)) | (slot_port[row_slot].astype(np.uint64) << _U64(16))
    # Rows in block order: already so when they come sorted by port count (the learn step sorts
    # them), else a stable radix sort on the small count.
    in_order = bool(np.all(count[1:] >= count[:-1]))
    order = None if in_order else np.argsort(count.astype(np.uint16), kind="stable")
    bounds = np.searchsorted(count if in_order else count[order], np.arange(int(count.max()) + 2))
    position = 0
    for k in range(2, int(count.max()) + 1):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        if lo == hi:
            continue
        rows = slice(lo, hi) if order is None else order[lo:hi]
        row_slots = row_slot[rows]
        size = (hi - lo) * (k - 1)
        if out is None:
            block = np.empty((hi - lo, k - 1), dtype=np.uint64)
        else:
            block = out[position : position + size].reshape(hi - lo, k - 1)
        position += size
        # Whole-row takes (a copy per row) beat a 2-D fancy index with a column slice by 2-3x.
        block[...] = np.take(other_port, row_slots, axis=0)[:, : k - 1]
        block |= base[rows, None]
        yield block, (np.take(other, row_slots, axis=0)[:, : k - 1] if targets else None)


def expand_pairs(
    row_slot: np.ndarray,
    row_fid: np.ndarray,
    slot_port: np.ndarray,
    slot_first: np.ndarray,
    slot_count: np.ndarray,
    *,
    host: HostTable | None = None,
) -> np.ndarray:
    """Pair keys of every row, in block order (:func:`_pair_blocks`; row ``i``'s ``k - 1`` pairs start
    at ``pair_offsets(...)[i]``, in its host's slot order, own slot skipped).

    Parameters
    ----------
    row_slot : int64[n_rows]
    row_fid : uint32[n_rows]
    slot_port : uint16[n_slots]
    slot_first, slot_count : int64[n_slots]
        The host CSR (module docstring). Preconditions: a host's slots are contiguous and sorted by
        port; ``slot_count >= 1``.
    host : HostTable, optional
        :func:`host_table` of the CSR, when the caller has it already.

    Returns
    -------
    uint64[sum(slot_count[row_slot] - 1)]: ``fid << 32 | p1 << 16 | p2``.
    """
    total = int((slot_count[row_slot] - 1).sum()) if row_slot.size else 0
    keys = np.empty(total, dtype=np.uint64)
    for _ in _pair_blocks(row_slot, row_fid, slot_port, slot_first, slot_count, host=host, out=keys):
        pass
    return keys


def best_predictor(
    row_slot: np.ndarray,
    row_fid: np.ndarray,
    slot_port: np.ndarray,
    slot_first: np.ndarray,
    slot_count: np.ndarray,
    table_keys: np.ndarray,
    table_rank: np.ndarray,
    best: np.ndarray,
    *,
    host: HostTable | None = None,
) -> np.ndarray:
    """For every slot, the smallest rank among the table entries of the pairs that target it.

    ``best`` (uint32[n_slots], :data:`NO_RANK` where nothing was found yet) is updated in place and
    returned, so calls over chunks of rows accumulate.

    Parameters
    ----------
    table_keys : uint64[n_table]
        Sorted, unique pair keys that have a hitrate.
    table_rank : uint32[n_table]
        The preference rank of each table key (smaller is better).
    """
    if row_slot.size == 0 or table_keys.size == 0:
        return best
    blocks = _pair_blocks(row_slot, row_fid, slot_port, slot_first, slot_count, targets=True, host=host)
    for block, target in blocks:
        keys = block.ravel()
        # A binary search each: the learn step orders rows so that these keys come nearly sorted,
        # which keeps the search paths in cache (random keys would be faster with a hash lookup).
        at = np.minimum(np.searchsorted(table_keys, keys), table_keys.size - 1)
        found = table_keys[at] == keys
        np.minimum.at(best, target.ravel()[found], table_rank[at[found]])
    return best


# --- counting -------------------------------------------------------------------------------------


def count_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and how often each occurs: ``(uint64[m], int64[m])``."""
    if keys.size == 0:
        return keys.astype(np.uint64), np.zeros(0, dtype=np.int64)
    ordered = np.sort(keys)
    value, _, counts = runs(ordered)
    return value, counts


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (``np.sort`` + neighbour test: NumPy 2.3+'s ``np.unique`` hashes, which
    is several times slower on large uint64 arrays)."""
    if values.size == 0:
        return values.copy()
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def lookup(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position (int64) of each of ``values`` in ``table`` (distinct keys), -1 where absent.

    A hash lookup (pandas' khash index): for tens of millions of random queries it is 5x faster
    than a binary search, whose every step misses the cache.
    """
    if table.size == 0 or values.size == 0:
        return np.full(values.size, -1, dtype=np.int64)
    import pandas as pd

    return pd.Index(table, copy=False).get_indexer(values).astype(np.int64, copy=False)


def sorted_isin(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which ``values`` occur in ``sorted_set`` (distinct values, in any order)."""
    return lookup(sorted_set, values) >= 0


def runs(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values in a sorted array: ``(value, start int64, length int64)`` of each."""
    if ordered.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ordered.copy(), empty, empty
    new = np.empty(ordered.size, dtype=bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    start = np.flatnonzero(new)
    return ordered[start], start, np.diff(np.append(start, ordered.size))


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the index of each value among them (int64)."""
    uniques = unique_sorted(values)
    return uniques, lookup(uniques, values)


def sum_by_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``counts`` over equal ``keys``: sorted distinct keys and their totals."""
    if keys.size == 0:
        return keys.astype(np.uint64), counts.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[starts], np.add.reduceat(counts[order].astype(np.int64), starts)


def asarray(values: Any, dtype: Any = None) -> np.ndarray:
    """``numpy.asarray`` (the GPU twin moves host arrays to the device)."""
    return np.asarray(values, dtype=dtype)


def to_host(values: Any) -> np.ndarray:
    """A NumPy array (identity here; the GPU twin copies to the host)."""
    return np.asarray(values)

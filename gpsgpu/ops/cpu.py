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
    # gathers each make a pass over memory). Blocks of strings bound the bytes copy and the offset
    # list to one block's.
    hash_one = xxhash.xxh64_intdigest if seed == 0 else functools.partial(xxhash.xxh64_intdigest, seed=seed)
    out = np.empty(n, dtype=np.uint64)
    for start in range(0, n, _HASH_BLOCK):
        stop = min(start + _HASH_BLOCK, n)
        bounds = (offsets[start : stop + 1] - offsets[start]).tolist()
        blob = data[offsets[start] : offsets[stop]].tobytes()
        pieces = map(blob.__getitem__, map(slice, bounds[:-1], bounds[1:]))
        out[start:stop] = np.fromiter(map(hash_one, pieces), dtype=np.uint64, count=stop - start)
    return out


#: Strings hashed per block by :func:`xxh64_strings`.
_HASH_BLOCK = 1 << 16


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

    Yields ``(keys uint64[n, k - 1], target slots [n, k - 1] or None)`` for slices of the rows of
    each ``k`` (at most :data:`_BLOCK_PAIRS` pairs, or one row, each), in order; with ``out`` (uint64
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
        # Rows of one k go a slice at a time: the whole-row takes copy the table's full width, so
        # for small k a slice bounds them to a few MB instead of 9 copies of a chunk's pairs.
        step = max(1, _BLOCK_PAIRS // (k - 1))
        for lo in range(int(bounds[k]), int(bounds[k + 1]), step):
            hi = min(lo + step, int(bounds[k + 1]))
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


#: Pairs :func:`_pair_blocks` yields at most at once.
_BLOCK_PAIRS = 1 << 18


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
    lower: np.ndarray | None = None,
) -> np.ndarray:
    """For every slot, the smallest rank among the table entries of the pairs that target it (with
    ``lower``, only ranks of at least ``lower[slot]`` count: k passes give the k best).

    ``best`` (uint32[n_slots], :data:`NO_RANK` where nothing was found yet) is updated in place and
    returned, so calls over chunks of rows accumulate.

    Parameters
    ----------
    table_keys : uint64[n_table]
        Sorted, unique pair keys that have a hitrate.
    table_rank : uint32[n_table]
        The preference rank of each table key (smaller is better).
    lower : uint32[n_slots], optional
        The smallest rank each slot may take (default 0: any).
    """
    if row_slot.size == 0 or table_keys.size == 0:
        return best
    blocks = _pair_blocks(row_slot, row_fid, slot_port, slot_first, slot_count, targets=True, host=host)
    for block, target in blocks:
        # Blocks are at most _BLOCK_PAIRS pairs: the lookups' temporaries stay a few MB a worker.
        keys = block.ravel()
        # A binary search each: the learn step orders rows so that these keys come nearly sorted,
        # which keeps the search paths in cache (random keys would be faster with a hash lookup).
        at = np.minimum(np.searchsorted(table_keys, keys), table_keys.size - 1)
        found = table_keys[at] == keys
        targets = target.ravel()
        if lower is not None:
            found &= table_rank[at] >= lower[targets]
        np.minimum.at(best, targets[found], table_rank[at[found]])
    return best


# --- counting -------------------------------------------------------------------------------------


def sort_in_place(values: np.ndarray) -> None:
    """Sort ``values`` in place, by NumPy's stable sort (timsort): the arrays sorted here are mostly
    runs already in order laid end to end (each feature kind's pairs, each chunk's candidates, each
    table's keys), which it merges instead of sorting again: 7x faster than the default sort on
    those, 1.2x slower on random values (bench/RESULTS.md, 2026-12-06)."""
    values.sort(kind="stable")


def count_keys(keys: np.ndarray, *, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and how often each occurs: ``(uint64[m], int64[m])``; ``in_place``
    sorts ``keys`` itself (no copy of it)."""
    if keys.size == 0:
        return keys.astype(np.uint64), np.zeros(0, dtype=np.int64)
    ordered = keys if in_place else keys.copy()
    sort_in_place(ordered)
    value, _, counts = runs(ordered)
    return value, counts


def unique_sorted(values: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """Sorted distinct values (``np.sort`` + neighbour test: NumPy 2.3+'s ``np.unique`` hashes, which
    is several times slower on large uint64 arrays); ``in_place`` sorts ``values`` itself (no copy
    of it; the result may be it)."""
    if values.size == 0:
        return values if in_place else values.copy()
    ordered = values if in_place else values.copy()
    sort_in_place(ordered)
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered if keep.all() else ordered[keep]


def union_sorted(*arrays: np.ndarray) -> np.ndarray:
    """Sorted distinct values of all the arrays (``np.union1d`` hashes on NumPy 2.3+, several times
    slower on large uint64 arrays)."""
    return unique_sorted(np.concatenate(arrays))


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


# --- generic array primitives (one name per operation; the GPU twin differs inside) --------------


def namespace() -> Any:
    """The array namespace these primitives take and return: NumPy."""
    return np


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes (int64) of ``values`` and their distinct values (hash based, O(n); the order of
    the distinct values is an implementation detail that no result may depend on)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), values
    import pandas as pd

    codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=values.dtype)


def factorize_with_positions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`factorize`, plus one position in ``values`` of each distinct value (int64)."""
    codes, uniques = factorize(values)
    position = np.empty(uniques.size, dtype=np.int64)
    # Reversed writes leave each value's first position (NumPy keeps the last of repeated writes).
    position[codes[::-1]] = np.arange(codes.size - 1, -1, -1, dtype=np.int64)
    return codes, uniques, position


def all_distinct(values: np.ndarray) -> bool:
    """Whether no value repeats."""
    import pandas as pd

    return bool(pd.Index(values).is_unique)


def repeat(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``values[i]`` repeated ``counts[i]`` times, in order."""
    return np.repeat(values, counts)


def take_over(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` written over ``index`` (same dtype), a block at a time: no second array of
    that size is made (``np.take(..., out=index)`` would first copy a narrow index to intp)."""
    for start in range(0, int(index.size), _TAKE_BLOCK):
        block = index[start : start + _TAKE_BLOCK]
        block[...] = values[block]
    return index


#: Elements gathered at once by :func:`take_over`.
_TAKE_BLOCK = 1 << 20


def lexsort(keys: list[np.ndarray]) -> np.ndarray:
    """Indices that sort by ``keys`` (the last is the primary key), each key in its own dtype (no
    stacked copy of them all)."""
    return np.lexsort(tuple(keys))


def argsort_stable(values: np.ndarray) -> np.ndarray:
    """Indices that sort ``values``, equal values in input order."""
    return np.argsort(values, kind="stable")


def segment_sum(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The sum of each run of ``values`` (runs begin at the sorted, non-empty ``start``)."""
    return np.add.reduceat(values, start) if start.size else values[:0]


def segment_max(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The largest value of each run of ``values`` (runs begin at ``start``)."""
    return np.maximum.reduceat(values, start) if start.size else values[:0]


def unique_first(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the first position (int64) of each."""
    uniques, first = np.unique(values, return_index=True)
    return uniques, first.astype(np.int64)


def sum_tables(tables: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``(keys, counts)`` tables (each with distinct keys): sorted distinct keys and totals."""
    tables = [t for t in tables if t[0].size]
    if not tables:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    if len(tables) == 1:
        return tables[0]
    # Sorted in place and each table's counts added at its keys' places (a table's keys are
    # distinct): no hash table, codes or float weights of every key (a factorization held 5x more).
    keys = np.concatenate([t[0] for t in tables]).astype(np.uint64, copy=False)
    sort_in_place(keys)  # sorted tables end to end: merged
    new = np.empty(keys.size, dtype=bool)
    new[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    uniques = keys[new]
    del keys, new
    totals = np.zeros(uniques.size, dtype=np.int64)
    for table_keys, table_counts in tables:
        totals[np.searchsorted(uniques, table_keys)] += table_counts.astype(np.int64, copy=False)
    return uniques, totals


def device_bytes_free() -> int | None:
    """Free memory of the device the arrays live on (``None``: host memory, not managed here)."""
    return None


def synchronize() -> None:
    """Wait for queued device work (nothing to wait for on the host)."""


def release_memory() -> None:
    """Give the memory freed so far back to the system: Arrow's allocator and glibc's heap keep
    freed pages for reuse, so without this a stage's temporaries stay in the resident set through
    the next stage and add to its peak."""
    import contextlib
    import ctypes

    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# --- strings (Arrow on the host; cuDF on the device) ----------------------------------------------
# A string array here is a ``pyarrow.LargeStringArray``; nulls are kept as nulls (an operation
# with a null operand gives null), and no Python string object is made per row.


def text(strings: Any) -> pa.Array:
    """A string array (large_string, one chunk) from an Arrow array or chunked array, or a list."""
    if isinstance(strings, pa.ChunkedArray):
        # One chunk is taken as it is: combining copies every byte even then.
        strings = strings.chunk(0) if strings.num_chunks == 1 else strings.combine_chunks()
    if not isinstance(strings, pa.Array):
        strings = pa.array(strings, type=pa.large_string())
    return strings.cast(pa.large_string()) if strings.type != pa.large_string() else strings


def text_join(*parts: str | pa.Array) -> pa.Array:
    """Element-wise concatenation of string arrays and literal strings."""
    import pyarrow.compute as pc

    typed = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else text(p) for p in parts]
    return pc.binary_join_element_wise(*typed, pa.scalar("", pa.large_string()))


def text_take(strings: pa.Array, index: np.ndarray) -> pa.Array:
    """``strings[index]``."""
    return text(strings.take(pa.array(np.asarray(index, dtype=np.int64))))


def text_split(strings: pa.Array, separator: str) -> tuple[pa.Array, np.ndarray]:
    """Every string cut on ``separator`` (BigQuery's ``SPLIT``: ``""`` gives one empty piece, a
    trailing separator an empty last piece; a null gives none): the pieces, in the order of their
    strings, and the index (int64) of the string each came from."""
    import pyarrow.compute as pc

    lists = pc.split_pattern(text(strings), separator)
    return text(pc.list_flatten(lists)), np.asarray(pc.list_parent_indices(lists)).astype(np.int64)


def text_equal(strings: pa.Array, value: str) -> np.ndarray:
    """Which strings equal ``value`` (a null does not)."""
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(pc.equal(strings, value), False))


def text_length(strings: pa.Array) -> np.ndarray:
    """Length of each string in characters (int64; a null counts 0)."""
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(pc.utf8_length(strings), 0)).astype(np.int64)


def text_valid(strings: pa.Array) -> np.ndarray:
    """Which strings are not null."""
    return np.asarray(strings.is_valid())


def text_decimal(values: np.ndarray) -> pa.Array:
    """Decimal strings of integers."""
    import pyarrow.compute as pc

    return text(pc.cast(pa.array(values), pa.large_string()))


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE_SHIFTS = np.arange(28, -1, -4, dtype=np.uint32)


def text_hex8(values: np.ndarray) -> pa.Array:
    """8-digit lower-case hex of uint32 values, built as one byte buffer."""
    values = np.asarray(values).astype(np.uint32, copy=False)
    chars = _HEX_DIGITS[(values[:, None] >> _NIBBLE_SHIFTS[None, :]) & np.uint32(0xF)]
    offsets = np.arange(0, 8 * values.size + 1, 8, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(
        values.size, pa.py_buffer(offsets.tobytes()), pa.py_buffer(np.ascontiguousarray(chars).tobytes())
    )


def text_concat(arrays: list[pa.Array]) -> pa.Array:
    """The string arrays one after the other."""
    return text(pa.chunked_array([text(a) for a in arrays], type=pa.large_string()))


#: A string array at least this large is handed back to the system as soon as it is copied.
_RELEASE_BYTES = 1 << 24


def text_concat_drain(arrays: list[Any]) -> pa.Array:
    """:func:`text_concat` that empties ``arrays`` as it copies them: each array can be freed as
    soon as it is copied (when nothing else holds it), so the peak is the result and one array,
    not twice the result."""
    parts = [text(a) for a in arrays]
    if any(a.null_count for a in parts):
        arrays.clear()
        return text_concat(parts)
    arrays.clear()
    n = sum(len(a) for a in parts)
    spans = []
    for a in parts:
        offsets, _ = string_buffers(a)
        spans.append(int(offsets[-1] - offsets[0]))
    out_offsets = np.empty(n + 1, dtype=np.int64)
    out_data = np.empty(sum(spans), dtype=np.uint8)
    row = byte = 0
    for k in range(len(parts)):
        offsets, data = string_buffers(parts[k])
        parts[k] = None  # type: ignore[call-overload]
        size = offsets.size - 1
        out_offsets[row : row + size] = offsets[:-1] - (offsets[0] - byte)
        out_data[byte : byte + spans[k]] = data[offsets[0] : offsets[-1]]
        row, byte = row + size, byte + spans[k]
        del offsets, data
        if spans[k] >= _RELEASE_BYTES:
            # Arrow's allocator keeps freed pages, which the NumPy result cannot reuse.
            pa.default_memory_pool().release_unused()
    out_offsets[n] = byte
    buffers = [None, pa.py_buffer(out_offsets), pa.py_buffer(out_data)]
    return pa.Array.from_buffers(pa.large_string(), n, buffers)


def text_encode(strings: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Dictionary encoding: the code (int64) of each string and the distinct strings (a null is one
    of them)."""
    encoded = text(strings).dictionary_encode(null_encoding="encode")
    return np.asarray(encoded.indices).astype(np.int64), text(encoded.dictionary)


def text_rank(strings: pa.Array) -> np.ndarray:
    """Rank (int64) of each string in byte order (distinct strings get distinct ranks)."""
    import pyarrow.compute as pc

    order = np.asarray(pc.sort_indices(strings))
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank


def text_to_arrow(strings: pa.Array) -> pa.Array:
    """The strings as a host Arrow array (they are one already)."""
    return strings


def text_from_arrow(strings: pa.Array) -> pa.Array:
    """A host Arrow string array in this backend's representation."""
    return text(strings)


def text_size(strings: pa.Array) -> int:
    return len(strings)


# --- tables (the engine's inputs: an Arrow table on the host, a cuDF frame on the device) ----------


def table_of(frame: Any, columns: list[str]) -> pa.Table:
    """The columns of a pandas frame (or an Arrow table) as an Arrow table."""
    if isinstance(frame, pa.Table):
        return frame.select(columns)
    from gpsgpu import schema

    return schema.frame_to_arrow(frame[columns])


def table_take(table: pa.Table, rows: np.ndarray) -> pa.Table:
    return table.take(pa.array(np.asarray(rows, dtype=np.int64)))


def table_slice(table: pa.Table, start: int, length: int) -> pa.Table:
    return table.slice(start, length)


def table_column(table: pa.Table, name: str, dtype: Any) -> np.ndarray:
    """A numeric column as a NumPy array of ``dtype``."""
    return np.asarray(table[name]).astype(dtype, copy=False)


def table_text(table: pa.Table, name: str) -> pa.Array:
    """A string column."""
    return text(table[name])


def table_rows(table: pa.Table) -> int:
    return int(table.num_rows)


def table_columns(table: pa.Table) -> list[str]:
    return list(table.column_names)


def table_to_arrow(table: pa.Table) -> pa.Table:
    return table

"""CuPy implementations of :mod:`gpsgpu.ops.cpu` (same names, same results, device arrays).

The pair kernels come from ``kernels/<name>.cu``, compiled by NVRTC through ``cupy.RawModule`` on
first use and cached for the process (CuPy also caches the binary on disk). CuPy and cuDF are
imported inside the functions, so importing this module does not touch CUDA.
"""

from __future__ import annotations

import functools
from typing import Any

from gpsgpu.ops.kernels import kernel_path

#: Threads per block of the pair kernels (one thread per feature row).
THREADS = 256
#: Upper bound on blocks of a grid-stride launch.
MAX_BLOCKS = 65535 * 8


@functools.cache
def _function(name: str) -> Any:
    import cupy

    module = cupy.RawModule(code=kernel_path(name).read_text(encoding="utf-8"), options=("--std=c++17",))
    return module.get_function(name)


def _grid(n: int) -> tuple[int]:
    return (max(1, min(MAX_BLOCKS, (n + THREADS - 1) // THREADS)),)


def xxh64_strings(strings: Any, seed: int = 0) -> Any:
    """XXH64 of every string's UTF-8 bytes with cuDF (``hash_values(method="xxhash64")``)."""
    import cudf

    series = strings if isinstance(strings, cudf.Series) else cudf.Series(strings)
    return series.hash_values(method="xxhash64", seed=seed).values


def pair_offsets(row_slot: Any, slot_count: Any) -> Any:
    """:func:`gpsgpu.ops.cpu.pair_offsets` on the device (block order, int64[n_rows]) as one stable
    sort by the row's pair count and one exclusive scan, with no host round trip."""
    import cupy as cp

    per_row = slot_count[row_slot].astype(cp.int64) - 1
    if per_row.size == 0:
        return cp.zeros(0, dtype=cp.int64)
    order = argsort_stable(per_row)
    ordered = per_row[order]
    starts = cp.empty(per_row.size, dtype=cp.int64)
    starts[order] = cp.cumsum(ordered) - ordered
    return starts


def host_table(slot_port: Any, slot_first: Any, slot_count: Any) -> None:
    """The kernels find a host's other slots themselves: nothing to precompute."""
    return None


def expand_pairs(
    row_slot: Any, row_fid: Any, slot_port: Any, slot_first: Any, slot_count: Any, *, host: Any = None
) -> Any:
    """:func:`gpsgpu.ops.cpu.expand_pairs` with the ``expand_pairs`` kernel (``host`` is ignored)."""
    import cupy as cp

    row_slot = cp.ascontiguousarray(row_slot, dtype=cp.int64)
    row_fid = cp.ascontiguousarray(row_fid, dtype=cp.uint32)
    offsets = pair_offsets(row_slot, slot_count)
    total = int((slot_count[row_slot] - 1).sum()) if row_slot.size else 0
    keys = cp.empty(total, dtype=cp.uint64)
    if total:
        _function("expand_pairs")(
            _grid(row_slot.size),
            (THREADS,),
            (
                row_slot,
                row_fid,
                cp.ascontiguousarray(slot_port, dtype=cp.uint16),
                cp.ascontiguousarray(slot_first, dtype=cp.int64),
                cp.ascontiguousarray(slot_count, dtype=cp.int64),
                offsets,
                keys,
                cp.int64(row_slot.size),
            ),
        )
    return keys


def best_predictor(
    row_slot: Any,
    row_fid: Any,
    slot_port: Any,
    slot_first: Any,
    slot_count: Any,
    table_keys: Any,
    table_rank: Any,
    best: Any,
    *,
    host: Any = None,
    lower: Any = None,
) -> Any:
    """:func:`gpsgpu.ops.cpu.best_predictor` with the ``best_predictor`` kernel (``best`` in place;
    ``host`` is ignored)."""
    import cupy as cp

    if row_slot.size == 0 or table_keys.size == 0:
        return best
    if lower is None:
        lower = cp.zeros(best.size, dtype=cp.uint32)
    _function("best_predictor")(
        _grid(row_slot.size),
        (THREADS,),
        (
            cp.ascontiguousarray(row_slot, dtype=cp.int64),
            cp.ascontiguousarray(row_fid, dtype=cp.uint32),
            cp.ascontiguousarray(slot_port, dtype=cp.uint16),
            cp.ascontiguousarray(slot_first, dtype=cp.int64),
            cp.ascontiguousarray(slot_count, dtype=cp.int64),
            cp.ascontiguousarray(table_keys, dtype=cp.uint64),
            cp.ascontiguousarray(table_rank, dtype=cp.uint32),
            cp.int64(table_keys.size),
            cp.ascontiguousarray(lower, dtype=cp.uint32),
            best,
            cp.int64(row_slot.size),
        ),
    )
    return best


def count_keys(keys: Any, *, in_place: bool = False) -> tuple[Any, Any]:
    """Distinct keys (sorted) and their multiplicities, on the device; ``in_place`` sorts ``keys``
    itself (no copy of it)."""
    import cupy as cp

    if keys.size == 0:
        return keys.astype(cp.uint64), cp.zeros(0, dtype=cp.int64)
    if in_place:
        keys.sort()
        ordered = keys
    else:
        ordered = cp.sort(keys)
    new = cp.empty(ordered.size, dtype=bool)
    new[0] = True
    cp.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    starts = cp.flatnonzero(new)
    bounds = cp.concatenate([starts, cp.asarray([ordered.size], dtype=starts.dtype)])
    return ordered[starts], cp.diff(bounds).astype(cp.int64)


def sum_by_key(keys: Any, counts: Any) -> tuple[Any, Any]:
    """Sum ``counts`` over equal ``keys``: sorted distinct keys and totals, on the device."""
    import cupy as cp

    if keys.size == 0:
        return keys.astype(cp.uint64), counts.astype(cp.int64)
    order = cp.argsort(keys)
    ordered = keys[order]
    new = cp.empty(ordered.size, dtype=bool)
    new[0] = True
    cp.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    group = cp.cumsum(new) - 1
    totals = cp.zeros(int(group[-1]) + 1, dtype=cp.int64)
    cp.add.at(totals, group, counts[order].astype(cp.int64))
    return ordered[new], totals


def asarray(values: Any, dtype: Any = None) -> Any:
    import cupy as cp

    return cp.asarray(values, dtype=dtype)


def to_host(values: Any) -> Any:
    import cupy as cp

    return cp.asnumpy(values)


# --- generic array primitives (twins of gpsgpu.ops.cpu's; CuPy arrays in and out) ---------------


def namespace() -> Any:
    """The array namespace these primitives take and return: CuPy."""
    import cupy

    return cupy


def sort_in_place(values: Any) -> None:
    """:func:`gpsgpu.ops.cpu.sort_in_place` on the device (CuPy's radix sort: runs gain nothing)."""
    values.sort()


def unique_sorted(values: Any, *, in_place: bool = False) -> Any:
    """:func:`gpsgpu.ops.cpu.unique_sorted` on the device."""
    import cupy as cp

    if not in_place:
        return cp.unique(values)
    if values.size == 0:
        return values
    values.sort()
    keep = cp.empty(values.size, dtype=bool)
    keep[:1] = True
    cp.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def unique_inverse(values: Any) -> tuple[Any, Any]:
    import cupy as cp

    if values.size == 0:
        return values.copy(), cp.zeros(0, dtype=cp.int64)
    uniques, inverse = cp.unique(values, return_inverse=True)
    return uniques, inverse.reshape(-1).astype(cp.int64, copy=False)


def runs(ordered: Any) -> tuple[Any, Any, Any]:
    import cupy as cp

    if ordered.size == 0:
        empty = cp.zeros(0, dtype=cp.int64)
        return ordered.copy(), empty, empty
    new = cp.empty(ordered.size, dtype=bool)
    new[0] = True
    cp.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    start = cp.flatnonzero(new)
    return ordered[start], start, cp.diff(cp.append(start, ordered.size))


def lookup(table: Any, values: Any) -> Any:
    """Position (int64) of each of ``values`` in ``table`` (distinct keys, any order), -1 where
    absent: a sort of the table and a binary search per value."""
    import cupy as cp

    if table.size == 0 or values.size == 0:
        return cp.full(values.size, -1, dtype=cp.int64)
    order = cp.argsort(table)
    ordered = table[order]
    at = cp.minimum(cp.searchsorted(ordered, values), ordered.size - 1)
    return cp.where(ordered[at] == values, order[at], -1).astype(cp.int64, copy=False)


def sorted_isin(values: Any, sorted_set: Any) -> Any:
    """Which ``values`` occur in ``sorted_set`` (sorted distinct values): a binary search each."""
    import cupy as cp

    if sorted_set.size == 0 or values.size == 0:
        return cp.zeros(values.size, dtype=bool)
    at = cp.minimum(cp.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[at] == values


def factorize_with_positions(values: Any) -> tuple[Any, Any, Any]:
    """Codes (int64), sorted distinct values, and one position of each distinct value."""
    import cupy as cp

    if values.size == 0:
        empty = cp.zeros(0, dtype=cp.int64)
        return empty, values.copy(), empty
    order = cp.argsort(values)
    ordered = values[order]
    new = cp.empty(ordered.size, dtype=bool)
    new[0] = True
    cp.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    codes = cp.empty(values.size, dtype=cp.int64)
    codes[order] = cp.cumsum(new) - 1
    return codes, ordered[new], order[new].astype(cp.int64, copy=False)


def factorize(values: Any) -> tuple[Any, Any]:
    """Dense codes (int64) and the sorted distinct values (the CPU twin orders them otherwise: no
    result may depend on the order)."""
    codes, uniques, _ = factorize_with_positions(values)
    return codes, uniques


def all_distinct(values: Any) -> bool:
    import cupy as cp

    return bool(cp.unique(values).size == values.size)


def repeat(values: Any, counts: Any) -> Any:
    """``values[i]`` repeated ``counts[i]`` times, in order: a scan and a binary search per output
    (``cupy.repeat`` takes the counts to the host)."""
    import cupy as cp

    if counts.size == 0:
        return values[:0]
    ends = cp.cumsum(counts.astype(cp.int64))
    total = int(ends[-1])
    return values[cp.searchsorted(ends, cp.arange(total, dtype=cp.int64), side="right")]


def take_over(values: Any, index: Any) -> Any:
    """``values[index]`` written over ``index`` (one thread per element reads its index, then
    writes it)."""
    import cupy as cp

    return cp.take(values, index, out=index)


def lexsort(keys: list[Any]) -> Any:
    """Indices that sort by ``keys`` (the last is the primary key); CuPy sorts one stacked array,
    of the keys' common dtype."""
    import cupy as cp

    dtype = cp.result_type(*keys)
    return cp.lexsort(cp.stack([key.astype(dtype, copy=False) for key in keys]))


def argsort_stable(values: Any) -> Any:
    """Indices that sort ``values`` (integers), equal values in input order."""
    import cupy as cp

    index = cp.arange(values.size, dtype=cp.int64)
    return cp.lexsort(cp.stack([index, values.astype(cp.int64)]))


def _segments(values: Any, start: Any) -> Any:
    """The run number of every element (runs begin at ``start``)."""
    import cupy as cp

    marks = cp.zeros(values.size, dtype=cp.int64)
    marks[start[1:]] = 1
    return cp.cumsum(marks)


def segment_sum(values: Any, start: Any) -> Any:
    """:func:`gpsgpu.ops.cpu.segment_sum` with an atomic scatter-add (float sums may differ from
    the host's in the last bits: the order of the additions is not fixed)."""
    import cupy as cp
    import cupyx

    out = cp.zeros(start.size, dtype=values.dtype)
    if start.size:
        cupyx.scatter_add(out, _segments(values, start), values)
    return out


def segment_max(values: Any, start: Any) -> Any:
    import cupy as cp
    import cupyx

    out = cp.full(start.size, -cp.inf if values.dtype.kind == "f" else 0, dtype=values.dtype)
    if start.size:
        cupyx.scatter_max(out, _segments(values, start), values)
    return out


def unique_first(values: Any) -> tuple[Any, Any]:
    """Sorted distinct values and the first position (int64) of each."""
    import cupy as cp
    import cupyx

    uniques, inverse = unique_inverse(values)
    first = cp.full(uniques.size, values.size, dtype=cp.int64)
    if values.size:
        cupyx.scatter_min(first, inverse, cp.arange(values.size, dtype=cp.int64))
    return uniques, first


def sum_tables(tables: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Sum ``(keys, counts)`` tables on the device: sorted distinct keys and totals."""
    import cupy as cp

    tables = [t for t in tables if t[0].size]
    if not tables:
        return cp.zeros(0, cp.uint64), cp.zeros(0, cp.int64)
    if len(tables) == 1:
        return tables[0]
    return sum_by_key(cp.concatenate([t[0] for t in tables]), cp.concatenate([t[1] for t in tables]))


def device_bytes_free() -> int:
    """Bytes the device can still give: free memory plus what CuPy's pool holds unused."""
    import cupy as cp

    free, _ = cp.cuda.runtime.memGetInfo()
    return int(free) + int(cp.get_default_memory_pool().free_bytes())


def synchronize() -> None:
    import cupy as cp

    cp.cuda.runtime.deviceSynchronize()


def release_memory() -> None:
    """Host memory freed by a device stage back to the system (the device's stays in its pool)."""
    from gpsgpu.ops import cpu

    cpu.release_memory()


# --- strings: a cuDF string Series (RangeIndex) ----------------------------------------------------


def text(strings: Any) -> Any:
    """A cuDF string Series (index 0..n-1) from a Series, an Arrow array or a list."""
    import cudf
    import pyarrow as pa

    if isinstance(strings, cudf.Series):
        return strings.reset_index(drop=True)
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    if isinstance(strings, pa.Array):
        return cudf.Series.from_arrow(strings.cast(pa.string()) if strings.type != pa.string() else strings)
    return cudf.Series(list(strings), dtype="str")


def text_join(*parts: Any) -> Any:
    """Element-wise concatenation of string Series and literal strings (at least one Series)."""
    length = next(len(p) for p in parts if not isinstance(p, str))
    if length == 0:
        return text([])
    out = None
    for part in parts:
        out = part if out is None else out + part
    return text(out)


def text_take(strings: Any, index: Any) -> Any:
    import cupy as cp

    return strings.take(cp.asarray(index, dtype=cp.int64)).reset_index(drop=True)


def text_split(strings: Any, separator: str) -> tuple[Any, Any]:
    """:func:`gpsgpu.ops.cpu.text_split` on the device (libcudf ``split_record``): pieces in the
    order of their strings, each string's in order."""
    import cudf
    import cupy as cp

    if len(strings) == 0:
        return text([]), cp.zeros(0, dtype=cp.int64)
    lists = strings.str.split(separator, regex=False)
    counts = lists.list.len().fillna(0).values.astype(cp.int64)
    pieces = lists.list.leaves.reset_index(drop=True)
    parent = repeat(cp.arange(len(strings), dtype=cp.int64), counts)
    # BigQuery's SPLIT (and Arrow's) gives "" one empty piece; libcudf may give none.
    lone = cp.flatnonzero((strings.str.len().fillna(-1).values == 0) & (counts == 0))
    if lone.size:
        pieces = cudf.concat([pieces, cudf.Series([""] * int(lone.size), dtype="str")], ignore_index=True)
        parent = cp.concatenate([parent, lone])
        order = argsort_stable(parent)  # pieces in string order, as on the host
        pieces, parent = text_take(pieces, order), parent[order]
    return pieces, parent


def text_equal(strings: Any, value: str) -> Any:
    return (strings == value).fillna(False).values.astype(bool)


def text_length(strings: Any) -> Any:
    import cupy as cp

    return strings.str.len().fillna(0).values.astype(cp.int64)


def text_valid(strings: Any) -> Any:
    return strings.notna().values


def text_decimal(values: Any) -> Any:
    import cudf

    return cudf.Series(values).astype("str").reset_index(drop=True)


def text_hex8(values: Any) -> Any:
    """8-digit lower-case hex of uint32 values: eight gathers from the 16 digits, concatenated."""
    import cudf
    import cupy as cp

    values = cp.asarray(values).astype(cp.uint32)
    if values.size == 0:
        return text([])
    digits = cudf.Series(list("0123456789abcdef"), dtype="str")
    out = None
    for shift in range(28, -1, -4):
        digit = digits.take(((values >> cp.uint32(shift)) & cp.uint32(0xF)).astype(cp.int64))
        digit = digit.reset_index(drop=True)
        out = digit if out is None else out + digit
    return out


def text_concat(arrays: list[Any]) -> Any:
    import cudf

    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return text([])
    return cudf.concat(arrays, ignore_index=True)


def text_concat_drain(arrays: list[Any]) -> Any:
    """:func:`text_concat`, emptying ``arrays`` (the host twin frees each array as it copies it)."""
    out = text_concat(arrays)
    arrays.clear()
    return out


def text_encode(strings: Any) -> tuple[Any, Any]:
    """Dictionary encoding on the device: strings are keyed by XXH64 and the keys factorized; every
    string is then compared with its key's representative, so a collision cannot merge two
    strings silently."""
    from gpsgpu.errors import InputError

    if len(strings) == 0:
        return namespace().zeros(0, dtype="int64"), text([])
    codes, _, positions = factorize_with_positions(xxh64_strings(strings))
    dictionary = text_take(strings, positions)
    same = (strings == text_take(dictionary, codes)).fillna(False) | strings.isna()
    if not bool(same.all()):
        raise InputError("two different feature strings have the same XXH64 key; cannot proceed exactly")
    return codes, dictionary


def text_rank(strings: Any) -> Any:
    """Rank (int64) of each string in byte order (libcudf compares strings by their UTF-8 bytes)."""
    import cupy as cp

    order = strings.argsort().values.astype(cp.int64)
    rank = cp.empty(order.size, dtype=cp.int64)
    rank[order] = cp.arange(order.size, dtype=cp.int64)
    return rank


def text_to_arrow(strings: Any) -> Any:
    import pyarrow as pa

    return strings.to_arrow().cast(pa.large_string())


def text_from_arrow(strings: Any) -> Any:
    return text(strings)


def text_size(strings: Any) -> int:
    return len(strings)


# --- tables: a cuDF frame with a RangeIndex ---------------------------------------------------------


def table_of(frame: Any, columns: list[str]) -> Any:
    """The columns of a cuDF frame (index 0..n-1)."""
    return frame[columns].reset_index(drop=True)


def table_take(table: Any, rows: Any) -> Any:
    import cupy as cp

    return table.take(cp.asarray(rows, dtype=cp.int64)).reset_index(drop=True)


def table_slice(table: Any, start: int, length: int) -> Any:
    return table.iloc[start : start + length].reset_index(drop=True)


def table_column(table: Any, name: str, dtype: Any) -> Any:
    return table[name].astype(dtype).values


def table_text(table: Any, name: str) -> Any:
    return table[name].reset_index(drop=True)


def table_rows(table: Any) -> int:
    return len(table)


def table_columns(table: Any) -> list[str]:
    return list(table.columns)


def table_to_arrow(table: Any) -> Any:
    return table.to_arrow(preserve_index=False)

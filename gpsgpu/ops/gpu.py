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
    """:func:`gpsgpu.ops.cpu.pair_offsets` on the device (block order, int64[n_rows])."""
    import cupy as cp

    per_row = slot_count[row_slot].astype(cp.int64) - 1
    starts = cp.zeros(row_slot.size, dtype=cp.int64)
    before = 0
    for k1 in range(1, int(per_row.max()) + 1 if per_row.size else 1):
        mask = per_row == k1
        rank = cp.cumsum(mask) - 1
        starts = cp.where(mask, before + rank * k1, starts)
        before += int(mask.sum()) * k1
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
) -> Any:
    """:func:`gpsgpu.ops.cpu.best_predictor` with the ``best_predictor`` kernel (``best`` in place;
    ``host`` is ignored)."""
    import cupy as cp

    if row_slot.size == 0 or table_keys.size == 0:
        return best
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
            best,
            cp.int64(row_slot.size),
        ),
    )
    return best


def count_keys(keys: Any) -> tuple[Any, Any]:
    """Distinct keys (sorted) and their multiplicities, on the device."""
    import cupy as cp

    if keys.size == 0:
        return keys.astype(cp.uint64), cp.zeros(0, dtype=cp.int64)
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

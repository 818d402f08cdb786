"""Additive counts of phase 1a: ``cp_server(p1, f)`` and ``count_p2(p1, f, p2)``.

Both are counted per partition of hosts and summed, so the totals do not depend on how the seed
was partitioned. Keys live in one global feature-id space (:func:`assign_global_ids`):

- server key: ``gid << 16 | p1`` (uint64);
- pair key: ``gid << 32 | p1 << 16 | p2`` (uint64, :data:`gpsgpu.schema.PAIR_FID_SHIFT`).

A pair ``(p1, f, p2)`` can only have ``count_p2 > 2`` when ``f`` is on more than 2 services of the
seed (``count_p2 <= cp_server <= services with f``), so pair expansion skips the rows of every
other feature: the ``count_p2`` table is exact for every feature on more than 2 services and holds
no other.

The pair expansion never holds all pairs at once: rows are cut into chunks of at most
``chunk_pairs`` pairs (and of about :data:`CACHE_CHUNK_PAIRS`, which the CPU's caches like), run
side by side on worker threads. Chunks are cut along global-id ranges, so their keys are disjoint
(each chunk's sorted counts simply follow the previous chunk's) and the best-predictor pass only
searches the slice of the hitrate table that a chunk's ids can match.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gpsgpu.learn.seed import SeedPartition
from gpsgpu.ops import cpu

#: Default upper bound on the pairs one chunk expands (about 16 bytes each while counting).
DEFAULT_CHUNK_PAIRS = 1 << 24

_SERVER_SHIFT = np.uint64(16)
_PAIR_SHIFT = np.uint64(32)


@dataclass(frozen=True)
class GlobalFeatures:
    """The union of the partitions' features, in a dense global id space.

    Attributes
    ----------
    fkeys : uint64[n_global]
        Key of every global id.
    home : int64[n_global, 2]
        ``(partition, local fid)`` of one place each global id occurs, to fetch its string.
    """

    fkeys: np.ndarray
    home: np.ndarray

    def strings(self, gids: np.ndarray, parts: list[SeedPartition]) -> pa.Array:
        """The canonical strings of ``gids`` (large_string, in the order given)."""
        out = np.empty(gids.size, dtype=object)
        where = self.home[gids]
        for k, part in enumerate(parts):
            sel = np.flatnonzero(where[:, 0] == k)
            if sel.size:
                out[sel] = np.asarray(part.strings.take(pa.array(where[sel, 1])).to_pylist(), dtype=object)
        return pa.array(out, type=pa.large_string())


def assign_global_ids(parts: list[SeedPartition]) -> GlobalFeatures:
    """Give every feature of every partition a global id (sets ``part.row_gid`` in place)."""
    sizes = [p.fkeys.size for p in parts]
    all_keys = np.concatenate([p.fkeys for p in parts]) if parts else np.zeros(0, np.uint64)
    if all_keys.size:
        codes, uniques = pd.factorize(all_keys, sort=False)
        uniques = np.asarray(uniques, dtype=np.uint64)
    else:
        codes, uniques = np.zeros(0, np.int64), np.zeros(0, np.uint64)
    if uniques.size >= 1 << 32:
        raise ValueError("more than 2**32 distinct features: partition the seed into separate models")
    owner = np.repeat(np.arange(len(parts)), sizes)
    local = np.concatenate([np.arange(s) for s in sizes]) if parts else np.zeros(0, np.int64)
    home = np.zeros((uniques.size, 2), dtype=np.int64)
    # Writing in reverse order leaves, for each global id, its first occurrence.
    home[codes[::-1], 0] = owner[::-1]
    home[codes[::-1], 1] = local[::-1]
    start = 0
    for part, size in zip(parts, sizes, strict=True):
        local_to_gid = codes[start : start + size].astype(np.uint32)
        _order_rows(part, local_to_gid[part.row_fid])
        start += size
    return GlobalFeatures(fkeys=uniques, home=home)


def _order_rows(part: SeedPartition, row_gid: np.ndarray) -> None:
    """Set ``row_gid`` and sort the rows by ``(host's port count, gid, slot)`` (``row_fid``, local
    ids that nothing reads past this point, is emptied).

    By port count: the pair kernels' block order, so no pass has to regroup rows. By gid next: the
    pair keys (``gid`` in their high bits) then come out nearly sorted, so looking them up in the
    sorted hitrate table walks it in order instead of missing the cache at every probe. The three
    fields are packed into one uint64 and sorted by value (much faster than an argsort).
    """
    n_slots, n_gids = part.slot_ip.size, int(row_gid.max(initial=0)) + 1
    if n_slots >= 1 << 32 or n_gids >= 1 << 28:
        order = np.lexsort((part.row_slot, row_gid, part.slot_count[part.row_slot]))
        part.row_slot, part.row_gid = part.row_slot[order], row_gid[order]
        part.row_fid = np.zeros(0, dtype=np.uint32)
        return
    packed = (
        (part.slot_count[part.row_slot].astype(np.uint64) << np.uint64(60))
        | (row_gid.astype(np.uint64) << np.uint64(32))
        | part.row_slot.astype(np.uint64)
    )
    packed.sort()
    part.row_slot = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    part.row_gid = ((packed >> np.uint64(32)) & np.uint64(0x0FFFFFFF)).astype(np.uint32)
    part.row_fid = np.zeros(0, dtype=np.uint32)  # local ids are not needed past this point


def server_keys(part: SeedPartition) -> np.ndarray:
    """``gid << 16 | p1`` of every feature row (uint64)."""
    port = part.slot_port[part.row_slot].astype(np.uint64)
    return (part.row_gid.astype(np.uint64) << _SERVER_SHIFT) | port


def count_servers(part: SeedPartition) -> tuple[np.ndarray, np.ndarray]:
    """``cp_server`` of one partition: server keys (sorted) and counts."""
    return cpu.count_keys(server_keys(part))


def count_features(part: SeedPartition, n_global: int) -> np.ndarray:
    """Services of the partition carrying each global feature id (int64[n_global]).

    A feature on at most 2 services of the whole seed has ``cp_server <= 2`` on every port, so
    no hitrate: summed over partitions, this prunes the rows pass 1 expands (unique banner lines
    above all) with one ``bincount`` instead of a per-row lookup of ``cp_server``.
    """
    return np.bincount(part.row_gid, minlength=n_global).astype(np.int64, copy=False)


def sum_by_key(tables: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``(keys, counts)`` tables (each with distinct keys): sorted distinct keys and totals."""
    tables = [t for t in tables if t[0].size]
    if not tables:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    if len(tables) == 1:
        return tables[0]
    keys = np.concatenate([t[0] for t in tables])
    counts = np.concatenate([t[1] for t in tables]).astype(np.int64)
    codes, uniques = pd.factorize(keys, sort=True)
    return np.asarray(uniques, dtype=np.uint64), np.bincount(
        codes, weights=counts, minlength=len(uniques)
    ).astype(np.int64)


def _chunks_by_gid(row_gid: np.ndarray, row_pairs: np.ndarray, chunk_pairs: int) -> list[np.ndarray]:
    """Rows grouped into chunks of whole global-id ranges, each of at most ``chunk_pairs`` pairs
    (a single id with more pairs than that forms its own chunk); a chunk's rows keep their order.

    Rows sorted by ``(port count, gid)`` (what :func:`assign_global_ids` leaves) are cut without a
    gather or a sort: in each port-count block a gid range is a contiguous run of rows.
    """
    total = int(row_pairs.sum())
    if total <= chunk_pairs:
        return [np.arange(row_gid.size)]
    n_gid = int(row_gid.max()) + 1
    next_block = row_pairs[1:] != row_pairs[:-1]
    in_order = bool(np.all(row_pairs[1:] >= row_pairs[:-1])) and bool(
        np.all((row_gid[1:] >= row_gid[:-1]) | next_block)
    )
    if not in_order:
        return _chunks_by_gid_unsorted(row_gid, row_pairs, chunk_pairs)
    blocks = cpu.runs(row_pairs)  # (pairs per row, first row, rows) of each port-count block
    per_gid = np.zeros(n_gid, dtype=np.int64)
    for k1, lo, size in zip(*(b.tolist() for b in blocks), strict=True):
        per_gid += k1 * np.bincount(row_gid[lo : lo + size], minlength=n_gid)
    # A chunk starts at every gid whose earlier pairs pass a multiple of chunk_pairs.
    before = np.cumsum(per_gid) - per_gid
    chunk = before // chunk_pairs
    edges = np.flatnonzero(np.concatenate(([True], chunk[1:] != chunk[:-1])))  # first gid of each
    cuts = [
        lo + np.searchsorted(row_gid[lo : lo + size], edges)
        for _, lo, size in zip(*(b.tolist() for b in blocks), strict=True)
    ]
    ends = [lo + size for _, lo, size in zip(*(b.tolist() for b in blocks), strict=True)]
    chunks = []
    for c in range(edges.size):
        parts = [
            np.arange(cut[c], cut[c + 1] if c + 1 < edges.size else end)
            for cut, end in zip(cuts, ends, strict=True)
        ]
        rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if rows.size:
            chunks.append(rows)
    return chunks


def _chunks_by_gid_unsorted(row_gid: np.ndarray, row_pairs: np.ndarray, chunk_pairs: int) -> list[np.ndarray]:
    """:func:`_chunks_by_gid` for rows in any order: a stable radix sort on the chunk number."""
    n_gid = int(row_gid.max()) + 1
    per_gid = np.zeros(n_gid, dtype=np.int64)
    for k1 in np.flatnonzero(np.bincount(row_pairs)).tolist():
        per_gid += k1 * np.bincount(row_gid[row_pairs == k1], minlength=n_gid)
    chunk_of_gid = (np.cumsum(per_gid) - per_gid) // chunk_pairs
    _, chunk_of_gid = cpu.unique_inverse(chunk_of_gid)
    n_chunks = int(chunk_of_gid.max()) + 1
    bucket = chunk_of_gid[row_gid].astype(np.uint16 if n_chunks < 1 << 16 else np.int64)
    order = np.argsort(bucket, kind="stable")
    bounds = np.zeros(n_chunks + 1, dtype=np.int64)
    np.cumsum(np.bincount(bucket, minlength=n_chunks), out=bounds[1:])
    return [order[bounds[c] : bounds[c + 1]] for c in range(n_chunks)]


#: Pairs per chunk the CPU works best with (a chunk's sort and searches stay mostly in cache);
#: ``chunk_pairs`` only caps it.
CACHE_CHUNK_PAIRS = 1 << 22


def _balanced(chunk_pairs: int, total: int, workers: int) -> int:
    """Pairs per chunk: at most ``chunk_pairs`` and :data:`CACHE_CHUNK_PAIRS`, and small enough to
    give every worker two chunks."""
    return max(1 << 16, min(chunk_pairs, CACHE_CHUNK_PAIRS, -(-total // (2 * max(workers, 1)))))


def _map_chunks(function: Callable[[Any], Any], chunks: list[Any], workers: int) -> list[Any]:
    """``function`` over ``chunks``, in order, on up to ``workers`` threads.

    NumPy releases the GIL in its sorts, searches, gathers and arithmetic, so chunks of pairs run
    side by side on the CPU's cores; each worker holds one chunk (``chunk_pairs`` bounds memory per
    worker). Results come back in chunk order, so nothing depends on the number of workers.
    """
    if workers <= 1 or len(chunks) <= 1:
        return [function(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
        return list(pool.map(function, chunks))


def count_pairs(
    part: SeedPartition,
    rows: np.ndarray,
    *,
    ops: ModuleType,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``count_p2`` of one partition over the feature rows ``rows``: sorted pair keys and counts.

    Chunks hold whole global-id ranges, so the chunks' sorted keys concatenate into sorted keys.

    Parameters
    ----------
    part : SeedPartition
        With global ids assigned.
    rows : int64 array
        The feature rows to expand (at least those of servers with ``cp_server > 2``), in order.
    ops : module
        :mod:`gpsgpu.ops.cpu` or :mod:`gpsgpu.ops.gpu`.
    chunk_pairs : int
        Upper bound on the pairs one worker holds at once.
    workers : int
        Threads expanding chunks side by side (CPU only).
    """
    row_slot = part.row_slot[rows]
    row_gid = part.row_gid[rows]
    if row_slot.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    row_pairs = part.slot_count[row_slot] - 1
    slot_port = ops.asarray(part.slot_port)
    slot_first = ops.asarray(part.slot_first)
    slot_count = ops.asarray(part.slot_count)
    host = ops.host_table(slot_port, slot_first, slot_count)

    def count_chunk(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = ops.expand_pairs(
            ops.asarray(row_slot[chunk]),
            ops.asarray(row_gid[chunk]),
            slot_port,
            slot_first,
            slot_count,
            host=host,
        )
        unique, counts = ops.count_keys(keys)
        return ops.to_host(unique), ops.to_host(counts)

    chunks = _chunks_by_gid(row_gid, row_pairs, _balanced(chunk_pairs, int(row_pairs.sum()), workers))
    tables = _map_chunks(count_chunk, chunks, workers)
    return np.concatenate([t[0] for t in tables]), np.concatenate([t[1] for t in tables])


def best_slots(
    part: SeedPartition,
    rows: np.ndarray,
    table_keys: np.ndarray,
    table_rank: np.ndarray,
    *,
    ops: ModuleType,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    workers: int = 1,
) -> np.ndarray:
    """The best predictor's rank for every slot of the partition (uint32, ``NO_RANK`` for none).

    With several workers each keeps its own ``best`` and the element-wise minimum of them is the
    answer (min is commutative: the result does not depend on the split).

    Parameters
    ----------
    rows : int64 array
        Feature rows that can be candidates (their server has a hitrate toward some port).
    table_keys, table_rank : uint64 / uint32 arrays
        Sorted pair keys with a hitrate and their preference rank (smaller is better).
    """
    best = ops.asarray(np.full(part.slot_ip.size, 0xFFFFFFFF, dtype=np.uint32))
    row_slot = part.row_slot[rows]
    row_gid = part.row_gid[rows]
    if row_slot.size == 0 or table_keys.size == 0:
        return ops.to_host(best)
    row_pairs = part.slot_count[row_slot] - 1
    slot_port = ops.asarray(part.slot_port)
    slot_first = ops.asarray(part.slot_first)
    slot_count = ops.asarray(part.slot_count)
    host = ops.host_table(slot_port, slot_first, slot_count)
    total = int(row_pairs.sum())
    chunks = _chunks_by_gid(row_gid, row_pairs, _balanced(chunk_pairs, total, workers))

    def best_of(own: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        # A chunk holds a global-id range, so only that slice of the (key-sorted) table can match:
        # searching the slice keeps the binary searches in cache.
        gids = row_gid[chunk]
        lo, hi = np.searchsorted(
            table_keys, np.array([int(gids.min()) << 32, (int(gids.max()) + 1) << 32], dtype=np.uint64)
        )
        return ops.best_predictor(
            ops.asarray(row_slot[chunk]),
            ops.asarray(gids),
            slot_port,
            slot_first,
            slot_count,
            ops.asarray(table_keys[lo:hi]),
            ops.asarray(table_rank[lo:hi]),
            own,
            host=host,
        )

    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            best = best_of(best, chunk)
        return ops.to_host(best)

    # Each worker takes every `workers`-th chunk into its own `best`, one chunk at a time.
    def worker(first: int) -> np.ndarray:
        own = best.copy()
        for chunk in chunks[first::workers]:
            own = best_of(own, chunk)
        return own

    return np.minimum.reduce(_map_chunks(worker, list(range(min(workers, len(chunks)))), workers))

"""Additive counts of phase 1a: ``cp_server(p1, f)`` and ``count_p2(p1, f, p2)``.

Both are counted per partition of hosts and summed, so the totals do not depend on how the seed
was partitioned. Keys live in one global feature-id space (:func:`global_ids`, :func:`set_global_ids`):

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

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from gpsgpu.backend import backend_of
from gpsgpu.learn.seed import SeedPartition, compact
from gpsgpu.ops import cpu, ops_for

#: Default upper bound on the pairs one chunk expands (about 16 bytes each while counting).
DEFAULT_CHUNK_PAIRS = 1 << 24

_SERVER_SHIFT = np.uint64(16)
_PAIR_SHIFT = np.uint64(32)


def _ops(part: SeedPartition) -> ModuleType:
    """The ops module of the backend a partition's arrays live on."""
    return ops_for(backend_of(part.slot_port))


@dataclass(frozen=True)
class GlobalFeatures:
    """The union of the partitions' features, in a dense global id space.

    Attributes
    ----------
    fkeys : uint64[n_global]
        Key of every global id.
    home : int64[n_global]
        One position of each global id in the partitions' feature dictionaries laid end to end
        (partition 0's, then partition 1's...), to fetch its string.
    sizes : list of int
        Features of each partition's dictionary.
    kept, kept_index : string array, int64[n_global]
        After :func:`keep_strings`: the strings of the features that can still matter, and where
        each global id's string is among them (-1: dropped).
    """

    fkeys: Any
    home: Any
    sizes: list[int] = field(default_factory=list)
    kept: Any = None
    kept_index: Any = None

    def strings(self, gids: Any) -> Any:
        """The canonical strings of ``gids`` (in the order given; kept ones only)."""
        if self.kept is None:
            raise ValueError("the features' strings are not kept yet (keep_strings)")
        return ops_for(backend_of(self.kept_index)).text_take(self.kept, self.kept_index[gids])


def feature_keys(part: SeedPartition) -> Any:
    """The keys of a partition's features, by local id (what :func:`global_ids` needs of it)."""
    return part.fkeys


def global_ids(part_fkeys: list[Any]) -> tuple[GlobalFeatures, list[Any]]:
    """Global ids for the partitions' features (their :func:`feature_keys`): the global features
    and, per partition, the global id of each local id (uint32, for :func:`set_global_ids`)."""
    ops = ops_for(backend_of(part_fkeys[0])) if part_fkeys else cpu
    xp = ops.namespace()
    sizes = [int(k.size) for k in part_fkeys]
    all_keys = xp.concatenate(part_fkeys) if part_fkeys else xp.zeros(0, xp.uint64)
    codes, uniques, home = ops.factorize_with_positions(all_keys.astype(xp.uint64, copy=False))
    if uniques.size >= 1 << 32:
        raise ValueError("more than 2**32 distinct features: partition the seed into separate models")
    bounds = np.cumsum([0, *sizes]).tolist()
    local_to_gid = [codes[lo:hi].astype(xp.uint32) for lo, hi in itertools.pairwise(bounds)]
    return GlobalFeatures(fkeys=uniques, home=home, sizes=sizes), local_to_gid


def set_global_ids(part: SeedPartition, local_to_gid: Any) -> SeedPartition:
    """Give the partition's feature rows their global ids (``row_gid``, rows reordered, see
    :func:`_order_rows`); the partition is updated in place and returned (a Mapper task)."""
    # The partition's frame and global_ids' temporaries were freed just before: out of the
    # resident set before the rows are packed.
    _ops(part).release_memory()
    if part.single_row_fid is not None:
        part.single_row_gid = local_to_gid[part.single_row_fid]
        part.single_row_fid = None  # local ids are not read past this point
    _order_rows(part, local_to_gid)
    return part


def kept_homes(glob: GlobalFeatures, keep: Any) -> tuple[Any, list[Any]]:
    """The global ids ``keep`` marks (bool per global id) and, per partition, the local ids of
    those whose string it holds (the partition :func:`strings_at` takes them from)."""
    xp = ops_for(backend_of(glob.fkeys)).namespace()
    gids = xp.flatnonzero(keep)
    home = glob.home[gids]
    bounds = np.cumsum([0, *glob.sizes]).tolist()
    owner = xp.searchsorted(xp.asarray(bounds[1:], dtype=xp.int64), home, side="right")
    mine = [xp.flatnonzero(owner == k) for k in range(len(glob.sizes))]
    return gids, [(m, home[m] - lo) for m, lo in zip(mine, bounds[:-1], strict=True)]


def strings_at(part: SeedPartition, at: tuple[Any, Any]) -> Any:
    """The partition's feature strings at the local ids of ``at`` (one of :func:`kept_homes`'s)."""
    return part.strings.take(at[1])


def keep_rows(part: SeedPartition, marked: Any) -> SeedPartition:
    """The partition keeping only the feature rows of the features ``marked`` (bool per global id),
    in order, in place (a Mapper task); the single-port rows (counted into supports by then) go.

    The passes that follow then walk every row left: no index of the rows they want, nor a copy
    of those rows' ids, is made beside the rows."""
    xp = _ops(part).namespace()
    n_rows = int(part.row_gid.size)
    keep = xp.empty(n_rows, dtype=bool)
    for start in range(0, n_rows, _ROW_BLOCK):
        keep[start : start + _ROW_BLOCK] = marked[part.row_gid[start : start + _ROW_BLOCK]]
    n_kept = int(keep.sum())
    if n_kept < n_rows:
        part.row_slot = compact(xp, part.row_slot, keep)
        part.row_gid = compact(xp, part.row_gid, keep)
        if n_kept < n_rows * 3 // 4:  # the views hold the whole arrays: copied out when it pays
            part.row_slot, part.row_gid = part.row_slot.copy(), part.row_gid.copy()
    part.single_row_port = part.single_row_fid = part.single_row_gid = None
    return part


def drop_feature_rows(part: SeedPartition) -> SeedPartition:
    """The partition without its feature rows (in place; a Mapper task): after the best-predictor
    passes only its services and counts are read."""
    xp = _ops(part).namespace()
    part.row_slot = xp.zeros(0, dtype=xp.int32)
    part.row_gid = part.row_fid = xp.zeros(0, dtype=xp.uint32)
    part.single_row_port = part.single_row_fid = part.single_row_gid = None
    return part


def drop_strings(part: SeedPartition) -> SeedPartition:
    """The partition without its feature dictionary's strings (in place; a Mapper task)."""
    part.strings = None
    return part


def keep_strings(
    glob: GlobalFeatures, gids: Any, homes: list[tuple[Any, Any]], pieces: list[Any]
) -> GlobalFeatures:
    """``glob`` keeping the strings of ``gids`` (:func:`kept_homes`), taken from the partitions
    (:func:`strings_at`), and no other: learn keeps those of the features with a hitrate (most
    features, a host's own banner line or /22, sit on too few services to have one)."""
    ops = ops_for(backend_of(glob.fkeys))
    xp = ops.namespace()
    order = xp.concatenate([m for m, _ in homes]) if homes else xp.zeros(0, xp.int64)
    kept_index = xp.full(glob.fkeys.size, -1, dtype=xp.int64)
    kept_index[gids[order]] = xp.arange(gids.size, dtype=xp.int64)
    kept = ops.text_concat(pieces) if pieces else ops.text([])
    return GlobalFeatures(glob.fkeys, glob.home, glob.sizes, kept=kept, kept_index=kept_index)


def _order_rows(part: SeedPartition, local_to_gid: Any) -> None:
    """Set ``row_gid`` (``local_to_gid`` at ``row_fid``) and sort the rows by ``(host's port count,
    gid, slot)`` (``row_fid``, local ids that nothing reads past this point, is emptied).

    By port count: the pair kernels' block order, so no pass has to regroup rows. By gid next: the
    pair keys (``gid`` in their high bits) then come out nearly sorted, so looking them up in the
    sorted hitrate table walks it in order instead of missing the cache at every probe. The three
    fields are packed into one uint64 and sorted by value (much faster than an argsort).
    """
    xp = _ops(part).namespace()
    n_slots = int(part.slot_ip.size)
    n_gids = int(local_to_gid.max()) + 1 if local_to_gid.size else 1
    if n_slots >= 1 << 32 or n_gids >= 1 << 28:
        row_gid = local_to_gid[part.row_fid]
        keys = xp.stack([part.row_slot, row_gid.astype(xp.int64), part.slot_count[part.row_slot]])
        order = xp.lexsort(keys.astype(xp.int64))
        part.row_slot, part.row_gid = part.row_slot[order], row_gid[order]
        part.row_fid = xp.zeros(0, dtype=xp.uint32)
        return
    # Packed and unpacked a block of rows at a time, the slots in place: one uint64 per row is alive
    # beside the rows, not four.
    n_rows = int(part.row_slot.size)
    packed = xp.empty(n_rows, dtype=xp.uint64)
    for start in range(0, n_rows, _PACK_BLOCK):
        slot = part.row_slot[start : start + _PACK_BLOCK]
        block = part.slot_count[slot].astype(xp.uint64)
        block <<= xp.uint64(60)
        gid_bits = local_to_gid[part.row_fid[start : start + _PACK_BLOCK]].astype(xp.uint64)
        gid_bits <<= xp.uint64(32)
        block |= gid_bits
        block |= slot.astype(xp.uint64)
        packed[start : start + block.size] = block
        del slot, block, gid_bits
    part.row_fid = xp.zeros(0, dtype=xp.uint32)  # local ids are not needed past this point
    part.row_slot = part.row_fid  # freed before the sort
    _ops(part).sort_in_place(packed)
    # Unpacked in one pass: the gid from the high half, the slot (below 2**32) from the low half,
    # int32 when slots fit (as the passes read it; the device kernels widen a chunk's slots).
    narrow = n_slots < 1 << 31
    part.row_gid = xp.empty(n_rows, dtype=xp.uint32)
    row_slot = xp.empty(n_rows, dtype=xp.int32) if narrow else None
    for start in range(0, n_rows, _PACK_BLOCK):
        block = packed[start : start + _PACK_BLOCK]
        gid_bits = block >> xp.uint64(32)
        gid_bits &= xp.uint64(0x0FFFFFFF)
        part.row_gid[start : start + block.size] = gid_bits
        if narrow:
            row_slot[start : start + block.size] = block & xp.uint64(0xFFFFFFFF)
        del block, gid_bits
    if narrow:
        part.row_slot = row_slot
    else:
        packed &= xp.uint64(0xFFFFFFFF)
        part.row_slot = packed.view(xp.int64)


#: Feature rows packed at once by :func:`_order_rows` (bounds its temporaries to a few MB).
_PACK_BLOCK = 1 << 20


def count_servers(part: SeedPartition) -> tuple[Any, Any]:
    """``cp_server`` of one partition: server keys ``gid << 16 | p1`` (sorted) and counts.

    Counted a range of global ids at a time (the chunks of :func:`_chunks_by_gid`): the ranges'
    sorted keys concatenate into sorted keys, and no key of every row is made at once."""
    ops = _ops(part)
    xp = ops.namespace()
    n_rows = int(part.row_gid.size)
    if n_rows == 0:
        return xp.zeros(0, xp.uint64), xp.zeros(0, xp.int64)
    row_pairs = _row_pairs(part)
    chunks = _chunks_by_gid(ops, part.row_gid, row_pairs, _balanced(ops, DEFAULT_CHUNK_PAIRS, n_rows, 1))
    del row_pairs

    def count_chunk(chunk: list[Any]) -> tuple[Any, Any]:
        slots, gids = _chunk_rows(xp, part, chunk)
        keys = gids.astype(xp.uint64)
        keys <<= xp.uint64(16)
        keys |= part.slot_port[slots].astype(xp.uint64)
        return ops.count_keys(keys, in_place=True)

    return _concatenate_tables(xp, [count_chunk(chunk) for chunk in chunks])


def count_single_servers(part: SeedPartition) -> tuple[Any, Any]:
    """Single-port services of one partition carrying each server ``gid << 16 | p1``: sorted keys
    and counts (with ``cp_server``, a rule's support; empty unless the partition has them)."""
    ops = _ops(part)
    xp = ops.namespace()
    if part.single_row_gid is None:
        return xp.zeros(0, xp.uint64), xp.zeros(0, xp.int64)
    keys = (part.single_row_gid.astype(xp.uint64) << xp.uint64(16)) | part.single_row_port.astype(xp.uint64)
    return ops.count_keys(keys, in_place=True)


def count_features(part: SeedPartition, n_global: int) -> Any:
    """Services of the partition carrying each global feature id (int64[n_global]).

    A feature on at most 2 services of the whole seed has ``cp_server <= 2`` on every port, so
    no hitrate: summed over partitions, this prunes the rows pass 1 expands (unique banner lines
    above all) with one ``bincount`` instead of a per-row lookup of ``cp_server``.
    """
    xp = _ops(part).namespace()
    total = xp.zeros(n_global, dtype=xp.int64)
    # By blocks of rows: bincount casts its input to int64, a copy of every row's gid otherwise.
    for start in range(0, int(part.row_gid.size), _ROW_BLOCK):
        total += xp.bincount(part.row_gid[start : start + _ROW_BLOCK], minlength=n_global)
    return total


def sum_by_key(tables: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Sum ``(keys, counts)`` tables (each with distinct keys): sorted distinct keys and totals."""
    nonempty = [t for t in tables if t[0].size]
    ops = ops_for(backend_of(nonempty[0][0])) if nonempty else cpu
    return ops.sum_tables(tables)


def _chunks_by_gid(ops: ModuleType, row_gid: Any, row_pairs: Any, chunk_pairs: int) -> list[list[Any]]:
    """Rows grouped into chunks of whole global-id ranges, each of at most ``chunk_pairs`` pairs
    (a single id with more pairs than that forms its own chunk); a chunk's rows keep their order.

    A chunk is a list of pieces, each a ``slice`` of the rows or an index array (see
    :func:`_gather`). Rows sorted by ``(port count, gid)`` (what :func:`set_global_ids` leaves)
    are cut without a gather or a sort: in each port-count block a gid range is a contiguous run of
    rows, one slice.
    """
    xp = ops.namespace()
    total = int(row_pairs.sum(dtype=xp.int64))
    if total <= chunk_pairs:
        return [[slice(0, int(row_gid.size))]]
    n_gid = int(row_gid.max()) + 1
    if not _in_block_order(xp, row_gid, row_pairs):
        return _chunks_by_gid_unsorted(ops, row_gid, row_pairs, chunk_pairs)
    blocks = [b.tolist() for b in ops.runs(row_pairs)]  # (pairs per row, first row, rows) per block
    per_gid = xp.zeros(n_gid, dtype=xp.int64)
    for k1, lo, size in zip(*blocks, strict=True):
        # By sub-blocks: bincount casts its input to int64, a copy of every row's gid otherwise.
        for sub in range(lo, lo + size, _ROW_BLOCK):
            per_gid += k1 * xp.bincount(row_gid[sub : min(sub + _ROW_BLOCK, lo + size)], minlength=n_gid)
    # A chunk starts at every gid whose earlier pairs pass a multiple of chunk_pairs.
    before = xp.cumsum(per_gid) - per_gid
    chunk = before // chunk_pairs
    edges = xp.flatnonzero(xp.concatenate((xp.ones(1, dtype=bool), chunk[1:] != chunk[:-1])))
    cuts = [
        (lo + xp.searchsorted(row_gid[lo : lo + size], edges)).tolist()
        for _, lo, size in zip(*blocks, strict=True)
    ]
    ends = [lo + size for _, lo, size in zip(*blocks, strict=True)]
    n_edges = int(edges.size)
    chunks = []
    for c in range(n_edges):
        pieces = [
            slice(cut[c], cut[c + 1] if c + 1 < n_edges else end) for cut, end in zip(cuts, ends, strict=True)
        ]
        pieces = [piece for piece in pieces if piece.stop > piece.start]
        if pieces:
            chunks.append(pieces)
    return chunks


def _in_block_order(xp: Any, row_gid: Any, row_pairs: Any) -> bool:
    """Whether rows are sorted by ``(pairs, gid)``, checked a block of rows at a time (each
    comparison is a bool per row)."""
    for lo in range(0, max(int(row_gid.size) - 1, 0), _ROW_BLOCK):
        hi = min(lo + _ROW_BLOCK, int(row_gid.size) - 1)
        pairs_now, pairs_next = row_pairs[lo:hi], row_pairs[lo + 1 : hi + 1]
        if not bool(xp.all(pairs_next >= pairs_now)):
            return False
        if not bool(xp.all((row_gid[lo + 1 : hi + 1] >= row_gid[lo:hi]) | (pairs_next != pairs_now))):
            return False
    return True


def _chunks_by_gid_unsorted(
    ops: ModuleType, row_gid: Any, row_pairs: Any, chunk_pairs: int
) -> list[list[Any]]:
    """:func:`_chunks_by_gid` for rows in any order: a stable sort on the chunk number."""
    xp = ops.namespace()
    n_gid = int(row_gid.max()) + 1
    per_gid = xp.zeros(n_gid, dtype=xp.int64)
    for k1 in xp.flatnonzero(xp.bincount(row_pairs)).tolist():
        per_gid += k1 * xp.bincount(row_gid[row_pairs == k1], minlength=n_gid)
    chunk_of_gid = (xp.cumsum(per_gid) - per_gid) // chunk_pairs
    _, chunk_of_gid = ops.unique_inverse(chunk_of_gid)
    n_chunks = int(chunk_of_gid.max()) + 1
    bucket = chunk_of_gid[row_gid]
    order = ops.argsort_stable(bucket)
    bounds = [0, *xp.cumsum(xp.bincount(bucket, minlength=n_chunks)).tolist()]
    return [[order[bounds[c] : bounds[c + 1]]] for c in range(n_chunks)]


def _gather(xp: Any, values: Any, pieces: list[Any]) -> Any:
    """``values`` at a chunk's pieces (slices or index arrays), in order."""
    taken = [values[piece] for piece in pieces]
    return taken[0] if len(taken) == 1 else xp.concatenate(taken)


def _row_pairs(part: SeedPartition) -> Any:
    """Pairs of each of the partition's feature rows (its host's port count - 1), uint16 (a host has
    at most 2**16 ports), gathered in blocks: no int64 copy of every row's slot is made."""
    xp = _ops(part).namespace()
    pairs_of_slot = (part.slot_count - 1).astype(xp.uint16)
    out = xp.empty(part.row_slot.size, dtype=xp.uint16)
    for lo in range(0, int(part.row_slot.size), _ROW_BLOCK):
        out[lo : lo + _ROW_BLOCK] = pairs_of_slot[part.row_slot[lo : lo + _ROW_BLOCK]]
    return out


def _chunk_rows(xp: Any, part: SeedPartition, chunk: list[Any]) -> tuple[Any, Any]:
    """Slots and global ids of a chunk's feature rows (its pieces index the partition's rows)."""
    return _gather(xp, part.row_slot, chunk), _gather(xp, part.row_gid, chunk)


#: Rows gathered at once by :func:`_row_pairs`.
_ROW_BLOCK = 1 << 20


#: Pairs per chunk on the CPU: each worker thread holds one chunk's keys, their sort and counts
#: (about 40 bytes a pair), and at 2**20 the passes are as fast as at 2**22 with a quarter of the
#: memory; ``chunk_pairs`` only caps it.
CACHE_CHUNK_PAIRS = 1 << 20
#: Device bytes one expanded pair needs while its chunk is counted (the key, the sort's copy and
#: scratch, the counted table): a chunk takes at most a quarter of the free device memory.
DEVICE_BYTES_PER_PAIR = 32


def _balanced(ops: ModuleType, chunk_pairs: int, total: int, workers: int) -> int:
    """Pairs per chunk. Host: at most ``chunk_pairs`` and :data:`CACHE_CHUNK_PAIRS`, and small enough
    to give every worker two chunks. Device: what a quarter of its free memory holds (``chunk_pairs``
    is a host bound; the device works best on one large chunk)."""
    free = ops.device_bytes_free()
    if free is not None:
        return max(1 << 20, free // (4 * DEVICE_BYTES_PER_PAIR))
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
    *,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    workers: int = 1,
    min_count: int = 1,
) -> tuple[Any, Any, int]:
    """``count_p2`` of one partition over its feature rows (:func:`keep_rows` leaves those of the
    servers that can have a hitrate): sorted pair keys and counts,
    on the partition's backend (the ``expand_pairs`` kernel on the device, its NumPy twin here),
    and how many distinct pairs were counted.

    Chunks hold whole global-id ranges, so the chunks' sorted keys concatenate into sorted keys.
    With ``min_count``, only pairs counted at least that often are kept: exact when this partition
    is the whole seed (no other partition's counts can add to a pair's).

    Parameters
    ----------
    part : SeedPartition
        With global ids assigned.
    chunk_pairs : int
        Upper bound on the pairs one host worker holds at once.
    workers : int
        Threads expanding chunks side by side (host only).
    min_count : int
        Keep the pairs counted at least this often (1: every pair).
    """
    ops = _ops(part)
    xp = ops.namespace()
    if part.row_gid.size == 0:
        return xp.zeros(0, xp.uint64), xp.zeros(0, xp.int64), 0
    # Each chunk gathers its own slots and ids (no copy of every row's).
    host, chunks = pair_plan(part, chunk_pairs=chunk_pairs, workers=workers)
    n_distinct = [0] * len(chunks)

    def count_chunk(k: int) -> tuple[Any, Any]:
        slots, gids = _chunk_rows(xp, part, chunks[k])
        keys = ops.expand_pairs(slots, gids, part.slot_port, part.slot_first, part.slot_count, host=host)
        del slots, gids
        keys, counts = ops.count_keys(keys)
        n_distinct[k] = int(keys.size)
        if min_count > 1:
            kept = counts >= min_count
            keys, counts = keys[kept], counts[kept]
        return keys, counts

    tables = _map_chunks(count_chunk, list(range(len(chunks))), workers)
    return (*_concatenate_tables(xp, tables), sum(n_distinct))


def _concatenate_tables(xp: Any, tables: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """The chunks' ``(keys, counts)`` end to end, each chunk freed once copied (not all held twice)."""
    n = sum(int(keys.size) for keys, _ in tables)
    keys = xp.empty(n, dtype=xp.uint64)
    counts = xp.empty(n, dtype=tables[0][1].dtype if tables else xp.int64)
    at = 0
    for k in range(len(tables)):
        chunk_keys, chunk_counts = tables[k]
        tables[k] = None  # type: ignore[call-overload]
        keys[at : at + chunk_keys.size] = chunk_keys
        counts[at : at + chunk_keys.size] = chunk_counts
        at += int(chunk_keys.size)
        del chunk_keys, chunk_counts
    return keys, counts


class PairPlan(NamedTuple):
    """How the pairs of a partition's rows are walked: the host table and the chunks of rows."""

    host: Any
    chunks: list[list[Any]]


def pair_plan(part: SeedPartition, *, chunk_pairs: int, workers: int) -> PairPlan:
    """The host table and chunks (whole global-id ranges, see :func:`_chunks_by_gid`) of the
    partition's feature rows."""
    ops = _ops(part)
    xp = ops.namespace()
    row_pairs = _row_pairs(part)
    total = int(row_pairs.sum(dtype=xp.int64))
    chunks = _chunks_by_gid(ops, part.row_gid, row_pairs, _balanced(ops, chunk_pairs, total, workers))
    del row_pairs
    return PairPlan(ops.host_table(part.slot_port, part.slot_first, part.slot_count), chunks)


def best_slots(
    part: SeedPartition,
    table_keys: Any,
    table_rank: Any,
    *,
    lower: Any = None,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    workers: int = 1,
    plan: PairPlan | None = None,
) -> Any:
    """The best predictor's rank for every slot of the partition (uint32, ``NO_RANK`` for none)
    among its feature rows (:func:`keep_rows` leaves those of servers with a hitrate toward some
    port); with ``lower`` (uint32 per slot), the best of rank at least ``lower[slot]``.

    With several host workers each keeps its own ``best`` and the element-wise minimum of them is
    the answer (min is commutative: the result does not depend on the split).

    Parameters
    ----------
    table_keys, table_rank : uint64 / uint32 arrays
        Sorted pair keys with a hitrate and their preference rank (smaller is better), on the
        partition's backend.
    plan : PairPlan, optional
        :func:`pair_plan` of the partition (the top-k passes make it once).
    """
    ops = _ops(part)
    xp = ops.namespace()
    best = xp.full(part.slot_ip.size, 0xFFFFFFFF, dtype=xp.uint32)
    if part.row_gid.size == 0 or table_keys.size == 0:
        return best
    host, chunks = plan or pair_plan(part, chunk_pairs=chunk_pairs, workers=workers)

    def best_of(own: Any, chunk: list[Any]) -> Any:
        # A chunk holds a global-id range, so only that slice of the (key-sorted) table can match:
        # searching the slice keeps the binary searches in cache.
        slots, gids = _chunk_rows(xp, part, chunk)
        bounds = xp.asarray([int(gids.min()) << 32, (int(gids.max()) + 1) << 32], dtype=xp.uint64)
        lo, hi = xp.searchsorted(table_keys, bounds).tolist()
        return ops.best_predictor(
            slots,
            gids,
            part.slot_port,
            part.slot_first,
            part.slot_count,
            table_keys[lo:hi],
            table_rank[lo:hi],
            own,
            host=host,
            lower=lower,
        )

    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            best = best_of(best, chunk)
        return best

    # Each worker takes every `workers`-th chunk into its own `best`, one chunk at a time.
    def worker(first: int) -> Any:
        own = best.copy()
        for chunk in chunks[first::workers]:
            own = best_of(own, chunk)
        return own

    return xp.minimum.reduce(_map_chunks(worker, list(range(min(workers, len(chunks)))), workers))

"""Phase 1a: hitrates, the best predictor of every seed service, the patterns and the rules.

The stage :func:`learn_patterns` runs the whole phase on a services frame; the pieces it strings
together (:mod:`gpsgpu.learn.seed`, :mod:`gpsgpu.learn.counts`) each work on one partition of hosts,
so the same code runs per partition under Dask. See ``GPS_REFERENCE.md`` §3 for the definitions.

The best-predictor tie-break (hitrate desc, then the smaller ``p1``, then the smaller feature string
in byte order) is one global *preference rank* over the hitrate table: candidates of one service
share ``p2``, so ordering all hitrate rows by ``(-hitrate, p1, string)`` orders every service's
candidates correctly, and the best candidate is the one of smallest rank (a ``min`` per service,
which the GPU does with ``atomicMin``). Strings are compared only once, when the features that
have a hitrate are sorted.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gpsgpu import schema
from gpsgpu.backend import Backend, backend_of
from gpsgpu.distributed import SERIAL, Mapper
from gpsgpu.io.metadata import Timings
from gpsgpu.learn.counts import (
    DEFAULT_CHUNK_PAIRS,
    best_slots,
    count_features,
    count_pairs,
    count_servers,
    count_single_servers,
    drop_feature_rows,
    drop_strings,
    feature_keys,
    global_ids,
    keep_rows,
    keep_strings,
    kept_homes,
    pair_plan,
    set_global_ids,
    strings_at,
    sum_by_key,
)
from gpsgpu.learn.seed import MAX_HOST_PORTS, SeedPartition, index_seed
from gpsgpu.ops import cpu, ops_for
from gpsgpu.partition import HostPartitions

log = logging.getLogger(__name__)

#: Defaults of the reference's knobs.
DEFAULT_HITRATE = 0.00001
DEFAULT_STEP = 16
#: GPS's ``count_p2 > 2``: a pair needs this many hosts for a hitrate to exist.
GPS_MIN_COUNT = 3

_NO_RANK = 0xFFFFFFFF


@dataclass
class LearnResult:
    """What phase 1a produces (host frames; :mod:`gpsgpu.io.model` writes them).

    Attributes
    ----------
    patterns : pandas.DataFrame
        ``ip uint32, p UInt16 (null for single-port hosts), neededP uint16, count_p2 Int64,
        hitrate Float64, cp_server Int64, server string (null), fkey UInt64 (null)``, sorted by
        ``(ip, p)``.
    rules : pandas.DataFrame
        ``neededP uint16, fkey uint64, p uint16, score float64, server string``: the distinct
        ``(neededP, server, p)`` of the predictors (GPS: of the patterns with ``p`` not null);
        ``score`` is their hitrate. Sorted by ``(neededP, fkey, p)``. With ``top_k > 1`` or
        ``supports``, also ``count_p2 int64, cp_server int64, support int64, hitrate float64``.
    predictors : pandas.DataFrame or None
        With ``top_k > 1``: ``ip uint32, p uint16, neededP uint16, fkey uint64, hitrate float64,
        rank int64``, the top-k predictors of every learned seed service (rank 0: GPS's best).
    seed : pandas.DataFrame
        ``ip uint32, port uint16``: every distinct service of the seed, sorted.
    count_p2 : pandas.DataFrame
        ``p1 uint16, fkey uint64, p2 uint16, count_p2 int64`` for every pair of a feature found on
        more than 2 services (no other pair can have a hitrate).
    cp_server : pandas.DataFrame
        ``p1 uint16, fkey uint64, cp_server int64`` for every server.
    counts : dict
        Sizes of everything above and of the seed.
    timings : dict
        Seconds spent in each step (features, count_servers, count_pairs, hitrates,
        best_predictors, assemble).
    """

    patterns: Any
    rules: Any
    seed: Any
    count_p2: Any
    cp_server: Any
    counts: dict[str, int] = field(default_factory=dict)
    predictors: Any = None
    timings: dict[str, float] = field(default_factory=dict)


def learn_patterns(
    services: Any,
    /,
    *,
    hitrate: float = DEFAULT_HITRATE,
    use_asn: bool = True,
    preset: str = "gps2022",
    n_partitions: int = 1,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    workers: int | None = None,
    mapper: Mapper = SERIAL,
    keep_counts: bool = False,
    top_k: int = 1,
    min_count: int = GPS_MIN_COUNT,
    max_host_ports: int = MAX_HOST_PORTS,
    supports: bool = False,
) -> LearnResult:
    """Phase 1a on a services frame: counts, hitrates, best predictors, patterns and rules.

    Every step runs on the backend of ``services``: on a cuDF frame the partitions, features,
    counts, hitrates, best predictors, patterns and rules stay in device memory, and only the
    finished tables come to the host (the frames of :class:`LearnResult`, which are written next).

    Parameters
    ----------
    services : frame or HostPartitions
        ``ip uint32, port uint16, asn uint32, protocol str, window int32, banner str``
        (+ optional ``tls_cert``), pandas or cuDF. A :class:`~gpsgpu.partition.HostPartitions`
        (a Parquet file) is read a partition at a time.
    hitrate : float
        Keep a service's best predictor only if its hitrate exceeds this (``Hitrate``).
    use_asn : bool
        ASN features and crosses on (``UseASN``).
    preset : str
        Feature preset (:data:`gpsgpu.features.PRESETS`); ``gps2022`` is compatible mode.
    n_partitions : int
        Partitions of hosts counted independently and summed (the results do not depend on it).
    chunk_pairs : int
        At most this many pairs are expanded at once by one host worker.
    workers : int, optional
        Threads counting chunks of pairs side by side on the CPU (default: every core; the GPU
        backend uses one, the device runs the chunks).
    mapper : Mapper
        Runs the per-partition steps (indexing, counting, best predictors): in this process by
        default, or on the workers of a Dask cluster (:func:`gpsgpu.distributed.open_cluster`).
        Counts are summed by key here, so the result does not depend on it.
    keep_counts : bool
        Also return the ``count_p2`` and ``cp_server`` tables (``learn --save-counts``).
    top_k, min_count, max_host_ports, supports
        The learner's knobs; GPS (compatible mode) is ``1, 3, 10, False``. ``top_k`` predictors are
        kept per seed service (k passes of the best-predictor kernel, each above the last's rank);
        a pair needs ``count_p2 >= min_count`` for a hitrate; hosts of 2..``max_host_ports`` ports
        are learned from (beyond 10, real ones only: :mod:`gpsgpu.learn.seed`); ``supports``
        counts every real seed service with a rule's feature on its port (single-port hosts too).
    """
    backend = services.backend if isinstance(services, HostPartitions) else backend_of(services)
    if backend is Backend.GPU or (workers is not None and workers < 1):
        workers = 1
    elif workers is None:
        workers = os.cpu_count() or 1
    ops = ops_for(backend)
    xp = ops.namespace()
    timings = Timings()

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        # The device runs behind the host: wait for it, so each step's time is its own. Then the
        # step's temporaries go back to the system before the next step allocates its own.
        with timings.step(name):
            yield
            ops.synchronize()
        ops.release_memory()

    if top_k < 1 or min_count < 1:
        raise ValueError(f"top_k and min_count must be at least 1, not {top_k} and {min_count}")
    # The partitions stay where they are indexed (on a cluster, on their workers: only keys, counts
    # and predictors travel, and the sums by key are reduced on the workers).
    with step("features"):
        parts = mapper.keep(
            index_seed,
            # A generator: partitions of a HostPartitions source are read one at a time (by the
            # workers themselves on a local cluster).
            mapper.partitions(services, n_partitions),
            use_asn=use_asn,
            preset=preset,
            max_host_ports=max_host_ports,
            single_features=supports,
        )
        glob, local_to_gid = global_ids(mapper.map(feature_keys, parts))
        parts = mapper.keep(set_global_ids, parts, local_to_gid)
        del local_to_gid

    # cp_server and the services of each feature: counted per partition, summed.
    with step("count_servers"):
        srv_keys, srv_counts = mapper.reduce(sum_by_key, mapper.keep(count_servers, parts))
        # A rule's support is its cp_server plus the single-port services with its server: those
        # are summed here, and added to cp_server for the rules' servers only (at the hitrates).
        single = mapper.reduce(sum_by_key, mapper.keep(count_single_servers, parts)) if supports else None
        on_services = mapper.reduce(_add, mapper.keep(count_features, parts, n_global=int(glob.fkeys.size)))
        # Only a feature on at least min_count services can have a hitrate: only its rows are
        # expanded into pairs.
        countable = on_services >= min_count
        del on_services

    # count_p2, over the rows of features that can have a hitrate (count_p2 <= services with f).
    # One partition holds every pair's whole count: its chunks keep only the pairs that can have a
    # hitrate (the distinct pairs counted are still counted).
    whole = len(parts) == 1 and not keep_counts
    with step("count_pairs"):
        parts = mapper.keep(keep_rows, parts, marked=mapper.broadcast(countable))
        pair_tables = mapper.keep(
            _count_pairs_job,
            parts,
            chunk_pairs=chunk_pairs,
            workers=workers,
            min_count=min_count if whole else 1,
        )
        pair_keys, pair_counts = mapper.reduce(sum_by_key, pair_tables)
        del pair_tables

    with step("hitrates"):

        def strings_of(gids: Any) -> Any:
            # Only a feature with a hitrate needs its string (to order ties, and for the rules):
            # taken from the partitions' dictionaries, which then go (the others never built).
            nonlocal parts
            marked = xp.zeros(glob.fkeys.size, dtype=bool)
            marked[gids.astype(xp.int64)] = True
            kept, homes = kept_homes(glob, marked)
            strings = keep_strings(glob, kept, homes, mapper.map(strings_at, parts, homes)).strings(gids)
            parts = mapper.keep(drop_strings, parts)
            return strings

        table = _hitrate_table(ops, pair_keys, pair_counts, srv_keys, srv_counts, strings_of, min_count)
        n_servers = int(srv_keys.size)
        n_pairs_counted = int(pair_keys.size)
        if whole:  # the pairs counted fewer than min_count times were not kept
            n_pairs_counted = _sum_counts(mapper.map(_counts_of, parts))["n_pairs_distinct"]
        support = None
        if single is not None:
            support = _support_of_servers(ops, (srv_keys, srv_counts), single, table.keys)
            del single
        if not keep_counts:  # the count tables are in the hitrate table now: their memory goes
            del pair_keys, pair_counts, srv_keys, srv_counts

    # Best predictor of every counted service; only rows of a feature with some hitrate can be one.
    with step("best_predictors"):
        rated = xp.zeros(glob.fkeys.size, dtype=bool)
        rated[table.gids.astype(xp.int64)] = True
        parts = mapper.keep(keep_rows, parts, marked=mapper.broadcast(rated))
        del rated
        found = mapper.map(
            _best_job,
            parts,
            table=mapper.broadcast(table),
            hitrate=hitrate,
            top_k=top_k,
            chunk_pairs=chunk_pairs,
            workers=workers,
        )
        parts = mapper.keep(drop_feature_rows, parts)  # the rows' work is done: their memory goes

    with step("assemble"):
        moved = _Moved(ops)
        patterns = _assemble_patterns(ops, found, table, glob.fkeys, moved)
        rules, predictors = _assemble_rules(
            ops, found, table, glob.fkeys, moved, ranked=top_k > 1 or supports, support=support
        )
        seed = moved(ops.unique_sorted(xp.concatenate(mapper.map(_services_of, parts))))
        seed_ip, seed_port = schema.unpack_service(seed)
        counts = _sum_counts(mapper.map(_counts_of, parts))
        counts.pop("n_pairs_distinct", None)
        del parts
        counts.update(
            n_servers=n_servers,
            n_pairs_counted=n_pairs_counted,
            n_hitrates=int(table.keys.size),
            n_patterns=len(patterns),
            n_patterns_single=int(patterns[schema.P].isna().sum()),
            n_rules=len(rules),
            n_features=int(glob.fkeys.size),
        )
        if predictors is not None:
            counts["n_predictors"] = len(predictors)
        count_p2 = cp_server = None
        if keep_counts:
            count_p2 = _pairs_frame(moved(pair_keys), moved(pair_counts), moved(glob.fkeys))
            cp_server = _servers_frame(moved(srv_keys), moved(srv_counts), moved(glob.fkeys))
        if backend is Backend.GPU:
            counts["bytes_device_to_host"] = moved.bytes
    return LearnResult(
        patterns=patterns,
        rules=rules,
        seed=pd.DataFrame({schema.IP: seed_ip, schema.PORT: seed_port}),
        count_p2=count_p2,
        cp_server=cp_server,
        counts=counts,
        timings=dict(timings),
        predictors=predictors,
    )


class _Moved:
    """Copies device arrays to the host and counts the bytes (NumPy arrays pass through)."""

    def __init__(self, ops: ModuleType) -> None:
        self.ops = ops
        self.bytes = 0

    def __call__(self, array: Any) -> np.ndarray:
        if isinstance(array, np.ndarray):
            return array
        self.bytes += int(array.nbytes)
        return self.ops.to_host(array)

    def text(self, strings: Any) -> pa.Array:
        out = self.ops.text_to_arrow(strings)
        if self.ops is not cpu:
            self.bytes += int(out.nbytes)
        return out


def _count_pairs_job(
    part: SeedPartition, *, chunk_pairs: int, workers: int, min_count: int
) -> tuple[Any, Any]:
    """``count_p2`` of one partition over its rows (:func:`keep_rows` left those of features on at
    least ``min_count`` services of the seed), the pairs counted at least ``min_count`` times: a
    task of :class:`Mapper`. The distinct pairs counted go to the partition's counts."""
    keys, counts, n_distinct = count_pairs(
        part, chunk_pairs=chunk_pairs, workers=workers, min_count=min_count
    )
    part.counts["n_pairs_distinct"] = n_distinct
    return keys, counts


def _add(arrays: list[Any]) -> Any:
    """The element-wise sum of equal-length arrays (a reduction of :meth:`Mapper.reduce`)."""
    total = arrays[0].copy()
    for more in arrays[1:]:
        total += more
    return total


def _services_of(part: SeedPartition) -> Any:
    return part.services


def _counts_of(part: SeedPartition) -> dict[str, int]:
    return part.counts


@dataclass(frozen=True)
class _Found:
    """One partition's predictors, as arrays on its backend."""

    ip: Any  # uint32 counted services with a predictor whose hitrate beats the threshold
    p: Any  # uint16 their port
    entry: Any  # int64 the predictor's entry in the hitrate table
    rank: Any  # int64 the predictor's place among the service's (0: the best)
    single_ip: Any  # uint32 single-port hosts
    single_port: Any  # uint16 their port


def _best_job(
    part: SeedPartition,
    *,
    table: _HitrateTable,
    hitrate: float,
    top_k: int,
    chunk_pairs: int,
    workers: int,
) -> _Found:
    """Predictors of one partition's counted services (``top_k`` passes, each above the last
    one's rank) and its single-port hosts (a :class:`Mapper` task); only its rows (:func:`keep_rows`
    left those of features with a hitrate) can be one."""
    xp = backend_of(part.slot_port).xp
    plan = pair_plan(part, chunk_pairs=chunk_pairs, workers=workers)  # one for the k passes
    slots, entries, ranks = [], [], []
    lower = None
    for k in range(top_k):
        best = best_slots(part, table.keys, table.rank, lower=lower, plan=plan)
        found = xp.flatnonzero(best != _NO_RANK)
        if found.size == 0:
            break
        entry = table.preference[best[found].astype(xp.int64)]
        # Candidates come best first: once one misses the threshold, the rest of its slot's do.
        keep = table.rate[entry] > hitrate
        slots.append(found[keep])
        entries.append(entry[keep])
        ranks.append(xp.full(int(keep.sum()), k, dtype=xp.int64))
        lower = xp.where(best == _NO_RANK, best, best + xp.uint32(1))
    slot = xp.concatenate(slots) if slots else xp.zeros(0, xp.int64)
    return _Found(
        part.slot_ip[slot],
        part.slot_port[slot],
        xp.concatenate(entries) if entries else xp.zeros(0, xp.int64),
        xp.concatenate(ranks) if ranks else xp.zeros(0, xp.int64),
        part.single_ip,
        part.single_port,
    )


@dataclass(frozen=True)
class _HitrateTable:
    """Pairs with a hitrate, sorted by pair key, with what the best-predictor step needs (arrays
    on the backend of the counts)."""

    keys: Any  # uint64 pair keys gid << 32 | p1 << 16 | p2, sorted
    count: Any  # int32 count_p2 (int64 past 2**31)
    cp: Any  # int32 cp_server (int64 past 2**31)
    rate: Any  # float64 hitrate
    p1: Any  # uint16
    rank: Any  # uint32 preference rank (0 = best)
    preference: Any  # int32 (int64 past 2**31 entries): entry of each rank
    gids: Any  # uint64 sorted distinct gids of the entries
    gid_index: Any  # int32 (as preference) index of each entry's gid in ``gids``
    strings: Any  # feature string of each of ``gids``


def _hitrate_table(
    ops: ModuleType,
    pair_keys: Any,
    pair_counts: Any,
    srv_keys: Any,
    srv_counts: Any,
    strings_of: Callable[[Any], Any],
    min_count: int = GPS_MIN_COUNT,
) -> _HitrateTable:
    """Hitrates where ``count_p2 >= min_count`` (GPS: > 2), and every entry's preference rank;
    ``strings_of(gids)`` gives the strings of the entries' sorted distinct global ids.

    The preference orders entries by ``(-hitrate, p1, feature string in byte order)``: one lexsort
    of the three keys (on the device as float64, where ranks and ports are exact)."""
    xp = ops.namespace()
    has_rate = pair_counts >= min_count
    if bool(has_rate.all()):  # one partition's pairs were kept only with a hitrate: no copy
        keys, count = pair_keys, pair_counts
    else:
        keys, count = pair_keys[has_rate], pair_counts[has_rate]
    del has_rate
    gid = keys >> xp.uint64(32)
    gids, gid_index = ops.unique_inverse(gid)
    strings = strings_of(gids)  # before the table's other columns are made (its callers' memory goes)
    p1 = ((keys >> xp.uint64(16)) & xp.uint64(0xFFFF)).astype(xp.uint16)
    server = (gid << xp.uint64(16)) | p1.astype(xp.uint64)
    del gid
    cp = srv_counts[xp.searchsorted(srv_keys, server)] if keys.size else srv_counts[:0]
    del server
    rate = count / cp
    # Counts of services and indices of entries as int32 while they fit: the table is held through
    # the best-predictor passes.
    index_dtype = xp.int32 if keys.size < 1 << 31 else xp.int64
    if keys.size and int(cp.max()) < 1 << 31:  # count_p2 <= cp_server
        count, cp = count.astype(xp.int32), cp.astype(xp.int32)
    gid_index = gid_index.astype(index_dtype)
    frank = ops.text_rank(strings)[gid_index]
    preference = ops.lexsort([frank, p1, -rate]).astype(index_dtype)
    del frank
    rank = xp.empty(preference.size, dtype=xp.uint32)
    rank[preference] = xp.arange(preference.size, dtype=xp.uint32)
    return _HitrateTable(keys, count, cp, rate, p1, rank, preference, gids, gid_index, strings)


def _support_of_servers(
    ops: ModuleType, servers_table: tuple[Any, Any], single: tuple[Any, Any], table_keys: Any
) -> tuple[Any, Any]:
    """The support ``(keys, counts)`` of the servers (``gid << 16 | p1``) of the hitrate table's
    pairs: their cp_server (every one is among ``servers_table``'s keys) plus their single-port
    services (``single``'s counts, where it has the server)."""
    xp = ops.namespace()
    servers = ops.unique_sorted(table_keys >> xp.uint64(16), in_place=True)
    keys, counts = servers_table
    support = counts[xp.searchsorted(keys, servers)]
    single_keys, single_counts = single
    if single_keys.size:
        at = xp.minimum(xp.searchsorted(single_keys, servers), single_keys.size - 1)
        found = single_keys[at] == servers
        support[found] += single_counts[at[found]]
    return servers, support


def _sum_counts(part_counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in part_counts:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def _assemble_patterns(
    ops: ModuleType, found: list[_Found], table: _HitrateTable, fkeys: Any, moved: _Moved
) -> pd.DataFrame:
    """The patterns frame (host): every counted service's best predictor and every single-port
    host, ordered and joined with the hitrate table on the backend, then copied to the host once."""
    xp = ops.namespace()
    best = [xp.flatnonzero(f.rank == 0) for f in found]
    n_found = sum(int(b.size) for b in best)
    n_single = sum(int(f.single_ip.size) for f in found)
    ip = xp.concatenate([f.ip[b] for f, b in zip(found, best, strict=True)] + [f.single_ip for f in found])
    ip = ip.astype(xp.uint32)
    p = xp.concatenate([*(f.p[b] for f, b in zip(found, best, strict=True)), xp.zeros(n_single, xp.uint16)])
    p = p.astype(xp.uint16)
    entry = xp.concatenate([*(f.entry[b] for f, b in zip(found, best, strict=True)),
                            xp.full(n_single, -1, dtype=xp.int64)])  # fmt: skip
    has_p = xp.arange(ip.size) < n_found
    needed = xp.concatenate([table.p1[entry[:n_found]], *(f.single_port for f in found)]).astype(xp.uint16)
    # Sort by (ip, p): p < 2**16 and a null p (single-port host) is alone on its ip.
    order = xp.argsort((ip.astype(xp.uint64) << xp.uint64(17)) | p.astype(xp.uint64))
    ip, p, entry, has_p, needed = ip[order], p[order], entry[order], has_p[order], needed[order]
    at = xp.maximum(entry, 0)
    rated = xp.where(has_p, table.gid_index[at], -1) if table.gid_index.size else xp.full(ip.size, -1)
    patterns = pd.DataFrame(
        {
            schema.IP: moved(ip),
            schema.P: pd.arrays.IntegerArray(moved(p), ~moved(has_p)),
            schema.NEEDED_P: moved(needed),
            schema.COUNT_P2: _nullable(moved, table.count, at, has_p, "Int64"),
            schema.HITRATE: _nullable(moved, table.rate, at, has_p, "Float64"),
            schema.CP_SERVER: _nullable(moved, table.cp, at, has_p, "Int64"),
        }
    )
    rated_host = moved(rated)
    has = rated_host >= 0
    strings = moved.text(table.strings)
    server = strings.take(pa.array(np.where(has, rated_host, 0), mask=~has)).cast(pa.string())
    patterns[schema.SERVER] = pd.arrays.ArrowStringArray(server)
    gid_fkeys = _gid_fkeys(ops, table, fkeys)
    patterns[schema.FKEY] = pd.arrays.IntegerArray(
        moved(gid_fkeys[xp.maximum(rated, 0)]) if table.gids.size else np.zeros(ip.size, np.uint64), ~has
    )
    return patterns


def _gid_fkeys(ops: ModuleType, table: _HitrateTable, fkeys: Any) -> Any:
    """The key of each of the hitrate table's features."""
    xp = ops.namespace()
    return fkeys[table.gids.astype(xp.int64)] if table.gids.size else xp.zeros(0, xp.uint64)


def _assemble_rules(
    ops: ModuleType,
    found: list[_Found],
    table: _HitrateTable,
    fkeys: Any,
    moved: _Moved,
    *,
    ranked: bool,
    support: tuple[Any, Any] | None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The rules (the distinct table entries among the predictors, sorted by ``(neededP, fkey, p)``)
    and, with several predictors per service, the predictors frame; host frames."""
    xp = ops.namespace()
    entries = ops.unique_sorted(xp.concatenate([f.entry for f in found]) if found else xp.zeros(0, xp.int64))
    gid_fkeys = _gid_fkeys(ops, table, fkeys)
    needed = table.p1[entries]
    p = (table.keys[entries] & xp.uint64(0xFFFF)).astype(xp.uint16)
    feature = table.gid_index[entries]
    fkey = gid_fkeys[feature] if entries.size else xp.zeros(0, xp.uint64)
    by = (
        xp.lexsort(xp.stack([p.astype(xp.uint64), fkey, needed.astype(xp.uint64)]))
        if entries.size
        else xp.zeros(0, dtype=xp.int64)
    )
    entries, needed, p, feature, fkey = entries[by], needed[by], p[by], feature[by], fkey[by]
    strings = moved.text(table.strings)
    rules = pd.DataFrame(
        {
            schema.NEEDED_P: moved(needed),
            schema.FKEY: moved(fkey),
            schema.P: moved(p),
            schema.SCORE: moved(table.rate[entries]).astype(np.float64),
            schema.SERVER: pd.arrays.ArrowStringArray(
                strings.take(pa.array(moved(feature))).cast(pa.string())
            ).astype("string"),
        }
    )
    if not ranked:
        return rules, None
    rules[schema.COUNT_P2] = moved(table.count[entries]).astype(np.int64)
    rules[schema.CP_SERVER] = moved(table.cp[entries]).astype(np.int64)
    if support is not None:
        # Every rule's server (gid << 16 | p1) is among the support's keys: cp_server's are.
        sup_keys, sup_counts = support
        server = table.keys[entries] >> xp.uint64(16)
        rules[schema.SUPPORT] = moved(sup_counts[xp.searchsorted(sup_keys, server)]).astype(np.int64)
    rules[schema.HITRATE] = rules[schema.SCORE].to_numpy()
    ip = xp.concatenate([f.ip for f in found]).astype(xp.uint32)
    port = xp.concatenate([f.p for f in found]).astype(xp.uint16)
    entry = xp.concatenate([f.entry for f in found])
    rank = xp.concatenate([f.rank for f in found])
    order = xp.lexsort(xp.stack([rank, port.astype(xp.int64), ip.astype(xp.int64)])) if ip.size else rank
    ip, port, entry, rank = ip[order], port[order], entry[order], rank[order]
    predictors = pd.DataFrame(
        {
            schema.IP: moved(ip),
            schema.P: moved(port),
            schema.NEEDED_P: moved(table.p1[entry]).astype(np.uint16),
            schema.FKEY: moved(gid_fkeys[table.gid_index[entry]] if entry.size else xp.zeros(0, xp.uint64)),
            schema.HITRATE: moved(table.rate[entry]).astype(np.float64),
            "rank": moved(rank).astype(np.int64),
        }
    )
    return rules, predictors


def _nullable(moved: _Moved, values: Any, at: Any, valid: Any, dtype: str) -> Any:
    """``values[at]`` where ``valid``, null elsewhere, as a pandas nullable array of ``dtype``."""
    taken = moved(values[at]) if values.size else np.zeros(at.size, dtype=np.int64)
    return pd.array(taken, dtype=dtype) if bool(valid.all()) else _masked(taken, ~moved(valid), dtype)


def _masked(values: np.ndarray, mask: np.ndarray, dtype: str) -> Any:
    if dtype == "Float64":
        return pd.arrays.FloatingArray(values.astype(np.float64), mask)
    return pd.arrays.IntegerArray(values.astype(np.int64), mask)


def _pairs_frame(keys: np.ndarray, counts: np.ndarray, fkeys: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            schema.P1: ((keys >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.uint16),
            schema.FKEY: fkeys[(keys >> np.uint64(32)).astype(np.int64)],
            schema.P2: (keys & np.uint64(0xFFFF)).astype(np.uint16),
            schema.COUNT_P2: counts.astype(np.int64),
        }
    )


def _servers_frame(keys: np.ndarray, counts: np.ndarray, fkeys: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            schema.P1: (keys & np.uint64(0xFFFF)).astype(np.uint16),
            schema.FKEY: fkeys[(keys >> np.uint64(16)).astype(np.int64)],
            schema.CP_SERVER: counts.astype(np.int64),
        }
    )

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
from collections.abc import Iterator
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
    assign_global_ids,
    best_slots,
    count_features,
    count_pairs,
    count_servers,
    sum_by_key,
)
from gpsgpu.learn.seed import SeedPartition, index_seed
from gpsgpu.ops import cpu, ops_for
from gpsgpu.partition import HostPartitions, split_by_host

log = logging.getLogger(__name__)

#: Defaults of the reference's knobs.
DEFAULT_HITRATE = 0.00001
DEFAULT_STEP = 16
#: ``count_p2`` must exceed this for a hitrate to exist.
MIN_COUNT_P2 = 2

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
        ``(neededP, server, p)`` of the patterns with ``p`` not null; ``score`` is the best
        hitrate among the patterns rows of the rule. Sorted by ``(neededP, fkey, p)``.
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
        # The device runs behind the host: wait for it, so each step's time is its own.
        with timings.step(name):
            yield
            ops.synchronize()

    with step("features"):
        parts = mapper.map(
            index_seed,
            # A generator: partitions of a HostPartitions source are read one at a time.
            split_by_host(services, n_partitions=n_partitions),
            use_asn=use_asn,
            preset=preset,
        )
        glob = assign_global_ids(parts)

    # cp_server and the services of each feature: counted per partition, summed.
    with step("count_servers"):
        srv_keys, srv_counts = sum_by_key(mapper.map(count_servers, parts))
        on_services = xp.zeros(glob.fkeys.size, dtype=xp.int64)
        for part in parts:
            on_services += count_features(part, glob.fkeys.size)

    # count_p2, over the rows of features that can have a hitrate.
    with step("count_pairs"):
        jobs = [(part, xp.flatnonzero(on_services[part.row_gid] > MIN_COUNT_P2)) for part in parts]
        pair_tables = mapper.map(_count_pairs_job, jobs, chunk_pairs=chunk_pairs, workers=workers)
        pair_keys, pair_counts = sum_by_key(pair_tables)

    with step("hitrates"):
        table = _hitrate_table(ops, pair_keys, pair_counts, srv_keys, srv_counts, glob, parts)

    # Best predictor of every counted service; only rows of a feature with some hitrate can be one.
    with step("best_predictors"):
        rated = xp.zeros(glob.fkeys.size, dtype=bool)
        rated[table.gids.astype(xp.int64)] = True
        shared_table = mapper.broadcast(table)
        jobs = [(part, xp.flatnonzero(rated[part.row_gid])) for part in parts]
        found = mapper.map(
            _best_job, jobs, table=shared_table, hitrate=hitrate, chunk_pairs=chunk_pairs, workers=workers
        )

    with step("assemble"):
        moved = _Moved(ops)
        patterns, rules = _assemble(ops, found, table, glob.fkeys, moved)
        seed = moved(ops.unique_sorted(xp.concatenate([p.services for p in parts])))
        seed_ip, seed_port = schema.unpack_service(seed)
        counts = _sum_counts(parts)
        counts.update(
            n_servers=int(srv_keys.size),
            n_pairs_counted=int(pair_keys.size),
            n_hitrates=int(table.keys.size),
            n_patterns=len(patterns),
            n_patterns_single=int(patterns[schema.P].isna().sum()),
            n_rules=len(rules),
            n_features=int(glob.fkeys.size),
        )
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


def _count_pairs_job(job: tuple[SeedPartition, Any], *, chunk_pairs: int, workers: int) -> tuple[Any, Any]:
    """``count_p2`` of one partition over its rows (a task of :class:`Mapper`)."""
    part, rows = job
    return count_pairs(part, rows, chunk_pairs=chunk_pairs, workers=workers)


@dataclass(frozen=True)
class _Found:
    """One partition's patterns rows, as arrays on its backend."""

    ip: Any  # uint32 counted services whose best predictor beats the hitrate
    p: Any  # uint16 their port
    entry: Any  # int64 their best predictor's entry in the hitrate table
    single_ip: Any  # uint32 single-port hosts
    single_port: Any  # uint16 their port


def _best_job(
    job: tuple[SeedPartition, Any],
    *,
    table: _HitrateTable,
    hitrate: float,
    chunk_pairs: int,
    workers: int,
) -> _Found:
    """Patterns rows of one partition: best predictors and single-port hosts (a :class:`Mapper` task)."""
    part, rows = job
    xp = backend_of(part.slot_port).xp
    best = best_slots(part, rows, table.keys, table.rank, chunk_pairs=chunk_pairs, workers=workers)
    found = xp.flatnonzero(best != _NO_RANK)
    entry = table.preference[best[found].astype(xp.int64)]
    keep = table.rate[entry] > hitrate
    found, entry = found[keep], entry[keep]
    return _Found(part.slot_ip[found], part.slot_port[found], entry, part.single_ip, part.single_port)


@dataclass(frozen=True)
class _HitrateTable:
    """Pairs with a hitrate, sorted by pair key, with what the best-predictor step needs (arrays
    on the backend of the counts)."""

    keys: Any  # uint64 pair keys gid << 32 | p1 << 16 | p2, sorted
    count: Any  # int64 count_p2
    cp: Any  # int64 cp_server
    rate: Any  # float64 hitrate
    p1: Any  # uint16
    rank: Any  # uint32 preference rank (0 = best)
    preference: Any  # int64: entry of each rank
    gids: Any  # uint64 sorted distinct gids of the entries
    gid_index: Any  # int64 index of each entry's gid in ``gids``
    strings: Any  # feature string of each of ``gids``


def _hitrate_table(
    ops: ModuleType,
    pair_keys: Any,
    pair_counts: Any,
    srv_keys: Any,
    srv_counts: Any,
    glob: Any,
    parts: list[SeedPartition],
) -> _HitrateTable:
    """Hitrates where ``count_p2 > 2``, and every entry's preference rank.

    The preference orders entries by ``(-hitrate, p1, feature string in byte order)``; the three
    keys go to one lexsort as float64 (ranks and ports are exact there)."""
    xp = ops.namespace()
    has_rate = pair_counts > MIN_COUNT_P2
    keys, count = pair_keys[has_rate], pair_counts[has_rate]
    gid = keys >> xp.uint64(32)
    p1 = ((keys >> xp.uint64(16)) & xp.uint64(0xFFFF)).astype(xp.uint16)
    server = (gid << xp.uint64(16)) | p1.astype(xp.uint64)
    cp = srv_counts[xp.searchsorted(srv_keys, server)] if keys.size else srv_counts[:0]
    rate = count / cp
    gids, gid_index = ops.unique_inverse(gid)
    strings = glob.strings(gids, parts)
    frank = ops.text_rank(strings)[gid_index]
    preference = xp.lexsort(xp.stack([frank.astype(xp.float64), p1.astype(xp.float64), -rate]))
    rank = xp.empty(preference.size, dtype=xp.uint32)
    rank[preference] = xp.arange(preference.size, dtype=xp.uint32)
    return _HitrateTable(keys, count, cp, rate, p1, rank, preference, gids, gid_index, strings)


def _sum_counts(parts: list[SeedPartition]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for name, value in part.counts.items():
            total[name] = total.get(name, 0) + value
    return total


def _assemble(
    ops: ModuleType, found: list[_Found], table: _HitrateTable, fkeys: Any, moved: _Moved
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The patterns and rules frames (host) from the partitions' rows: ordered, joined with the
    hitrate table and the rules reduced on the backend, then copied to the host once."""
    xp = ops.namespace()
    n_found = [int(f.ip.size) for f in found]
    n_single = [int(f.single_ip.size) for f in found]
    ip = xp.concatenate([f.ip for f in found] + [f.single_ip for f in found]).astype(xp.uint32)
    p = xp.concatenate([*(f.p for f in found), xp.zeros(sum(n_single), xp.uint16)]).astype(xp.uint16)
    entry = xp.concatenate([f.entry for f in found] + [xp.full(sum(n_single), -1, dtype=xp.int64)])
    has_p = xp.arange(ip.size) < sum(n_found)
    needed = xp.concatenate([table.p1[entry[: sum(n_found)]], *(f.single_port for f in found)]).astype(
        xp.uint16
    )
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
    strings = moved.text(table.strings)
    rated_host = moved(rated)
    has = rated_host >= 0
    server = strings.take(pa.array(np.where(has, rated_host, 0), mask=~has)).cast(pa.string())
    patterns[schema.SERVER] = pd.arrays.ArrowStringArray(server)
    gid_fkeys = fkeys[table.gids.astype(xp.int64)] if table.gids.size else xp.zeros(0, xp.uint64)
    patterns[schema.FKEY] = pd.arrays.IntegerArray(
        moved(gid_fkeys[xp.maximum(rated, 0)]) if table.gids.size else np.zeros(ip.size, np.uint64), ~has
    )

    # Rules: distinct (neededP, feature, p) of the rows with p, scored by their best hitrate.
    with_p = xp.flatnonzero(has_p)
    rule_feature = rated[with_p]
    key = (
        (rule_feature.astype(xp.uint64) << xp.uint64(32))
        | (needed[with_p].astype(xp.uint64) << xp.uint64(16))
        | p[with_p].astype(xp.uint64)
    )
    rule_key, score, _ = ops.max_by_key(key, table.rate[entry[with_p]])
    rule_feature = (rule_key >> xp.uint64(32)).astype(xp.int64)
    rule_needed = ((rule_key >> xp.uint64(16)) & xp.uint64(0xFFFF)).astype(xp.uint16)
    rule_p = (rule_key & xp.uint64(0xFFFF)).astype(xp.uint16)
    rule_fkey = gid_fkeys[rule_feature] if rule_feature.size else xp.zeros(0, xp.uint64)
    by = (
        xp.lexsort(xp.stack([rule_p.astype(xp.uint64), rule_fkey, rule_needed.astype(xp.uint64)]))
        if rule_key.size
        else xp.zeros(0, dtype=xp.int64)
    )
    rule_feature_host = moved(rule_feature[by])
    rules = pd.DataFrame(
        {
            schema.NEEDED_P: moved(rule_needed[by]),
            schema.FKEY: moved(rule_fkey[by]),
            schema.P: moved(rule_p[by]),
            schema.SCORE: moved(score[by]).astype(np.float64),
            schema.SERVER: pd.arrays.ArrowStringArray(
                strings.take(pa.array(rule_feature_host)).cast(pa.string())
            ).astype("string"),
        }
    )
    return patterns, rules


def _nullable(moved: _Moved, values: Any, at: Any, valid: Any, dtype: str) -> Any:
    """``values[at]`` where ``valid``, null elsewhere, as a pandas nullable array of ``dtype``."""
    taken = moved(values[at]) if values.size else np.zeros(at.size, dtype=np.int64)
    return pd.array(taken, dtype=dtype) if bool(valid.all()) else _masked(taken, ~moved(valid), dtype)


def _masked(values: np.ndarray, mask: np.ndarray, dtype: str) -> Any:
    if dtype == "Float64":
        return pd.arrays.FloatingArray(values.astype(np.float64), mask)
    return pd.arrays.IntegerArray(values.astype(np.int64), mask)


def rules_of(patterns: pd.DataFrame, /) -> pd.DataFrame:
    """The rules of a patterns frame: distinct ``(neededP, fkey, p)`` with ``p`` not null.

    Parameters
    ----------
    patterns : pandas.DataFrame
        As in :class:`LearnResult` (``neededP, p, fkey, server, hitrate``).

    Returns
    -------
    pandas.DataFrame
        ``neededP uint16, fkey uint64, p uint16, score float64, server string``: ``score`` is the
        best hitrate among the patterns rows of the rule. Sorted by ``(neededP, fkey, p)``.
    """
    with_p = patterns[patterns[schema.P].notna()]
    rules = (
        with_p.groupby([schema.NEEDED_P, schema.FKEY, schema.P], sort=True, observed=True)
        .agg(score=(schema.HITRATE, "max"), server=(schema.SERVER, "first"))
        .reset_index()
    )
    return pd.DataFrame(
        {
            schema.NEEDED_P: rules[schema.NEEDED_P].to_numpy(np.uint16),
            schema.FKEY: rules[schema.FKEY].to_numpy(np.uint64),
            schema.P: rules[schema.P].to_numpy(np.uint16),
            schema.SCORE: rules[schema.SCORE].to_numpy(np.float64),
            schema.SERVER: rules[schema.SERVER].astype("string"),
        }
    )


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

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

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def _rank_strings(strings: pa.Array) -> np.ndarray:
    """Rank (int64) of each string in byte order (Arrow compares strings as bytes)."""
    order = np.asarray(pc.sort_indices(strings))
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank


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
) -> LearnResult:
    """Phase 1a on a services frame: counts, hitrates, best predictors, patterns and rules.

    Parameters
    ----------
    services : frame or HostPartitions
        ``ip uint32, port uint16, asn uint32, protocol str, window int32, banner str``
        (+ optional ``tls_cert``), pandas or cuDF; the pair counting runs on its backend. A
        :class:`~gpsgpu.partition.HostPartitions` (a Parquet file) is read a partition at a time.
    hitrate : float
        Keep a service's best predictor only if its hitrate exceeds this (``Hitrate``).
    use_asn : bool
        ASN features and crosses on (``UseASN``).
    preset : str
        Feature preset (:data:`gpsgpu.features.PRESETS`); ``gps2022`` is compatible mode.
    n_partitions : int
        Partitions of hosts counted independently and summed (the results do not depend on it).
    chunk_pairs : int
        At most this many pairs are expanded at once by one worker.
    workers : int, optional
        Threads counting chunks of pairs side by side on the CPU (default: every core; the GPU
        backend uses one, the device runs the chunks).
    mapper : Mapper
        Runs the per-partition steps (indexing, counting, best predictors): in this process by
        default, or on the workers of a Dask cluster (:func:`gpsgpu.distributed.open_cluster`).
        Counts are summed by key here, so the result does not depend on it.
    """
    backend = services.backend if isinstance(services, HostPartitions) else backend_of(services)
    if backend is Backend.GPU or (workers is not None and workers < 1):
        workers = 1
    elif workers is None:
        workers = os.cpu_count() or 1
    timings = Timings()
    with timings.step("features"):
        parts = mapper.map(
            index_seed,
            # A generator: partitions of a HostPartitions source are read one at a time.
            split_by_host(services, n_partitions=n_partitions),
            use_asn=use_asn,
            preset=preset,
        )
        glob = assign_global_ids(parts)

    # cp_server and the services of each feature: counted per partition, summed.
    with timings.step("count_servers"):
        srv_keys, srv_counts = sum_by_key(mapper.map(count_servers, parts))
        on_services = np.zeros(glob.fkeys.size, dtype=np.int64)
        for part in parts:
            on_services += count_features(part, glob.fkeys.size)

    # count_p2, over the rows of features that can have a hitrate.
    with timings.step("count_pairs"):
        jobs = [(part, np.flatnonzero(on_services[part.row_gid] > MIN_COUNT_P2)) for part in parts]
        pair_tables = mapper.map(
            _count_pairs_job, jobs, backend=backend.value, chunk_pairs=chunk_pairs, workers=workers
        )
        pair_keys, pair_counts = sum_by_key(pair_tables)

    with timings.step("hitrates"):
        table = _hitrate_table(pair_keys, pair_counts, srv_keys, srv_counts, glob, parts)

    # Best predictor of every counted service; only rows of a feature with some hitrate can be one.
    with timings.step("best_predictors"):
        rated = np.zeros(glob.fkeys.size, dtype=bool)
        rated[table.gids.astype(np.int64)] = True
        shared_table = mapper.broadcast(table)
        jobs = [(part, np.flatnonzero(rated[part.row_gid])) for part in parts]
        frames = []
        for part_frames in mapper.map(
            _best_job,
            jobs,
            table=shared_table,
            hitrate=hitrate,
            backend=backend.value,
            chunk_pairs=chunk_pairs,
            workers=workers,
        ):
            frames += part_frames

    with timings.step("assemble"):
        patterns = _assemble_patterns(frames, table.gids, table.strings, glob.fkeys)
        rules = rules_of(patterns)
        seed = cpu.unique_sorted(np.concatenate([p.services for p in parts]))
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
        count_p2 = _pairs_frame(pair_keys, pair_counts, glob.fkeys)
        cp_server = _servers_frame(srv_keys, srv_counts, glob.fkeys)
    return LearnResult(
        patterns=patterns,
        rules=rules,
        seed=pd.DataFrame({schema.IP: seed_ip, schema.PORT: seed_port}),
        count_p2=count_p2,
        cp_server=cp_server,
        counts=counts,
        timings=dict(timings),
    )


def _count_pairs_job(
    job: tuple[SeedPartition, np.ndarray], *, backend: str, chunk_pairs: int, workers: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count_p2`` of one partition over its rows (a task of :class:`Mapper`)."""
    part, rows = job
    return count_pairs(part, rows, ops=ops_for(Backend(backend)), chunk_pairs=chunk_pairs, workers=workers)


def _best_job(
    job: tuple[SeedPartition, np.ndarray],
    *,
    table: _HitrateTable,
    hitrate: float,
    backend: str,
    chunk_pairs: int,
    workers: int,
) -> list[pd.DataFrame]:
    """Patterns rows of one partition: best predictors and single-port hosts (a :class:`Mapper` task)."""
    part, rows = job
    best = best_slots(
        part,
        rows,
        table.keys,
        table.rank,
        ops=ops_for(Backend(backend)),
        chunk_pairs=chunk_pairs,
        workers=workers,
    )
    return [_best_frame(part, best, table, hitrate), _single_frame(part)]


@dataclass(frozen=True)
class _HitrateTable:
    """Pairs with a hitrate, sorted by pair key, with what the best-predictor step needs."""

    keys: np.ndarray  # uint64 pair keys gid << 32 | p1 << 16 | p2, sorted
    count: np.ndarray  # int64 count_p2
    cp: np.ndarray  # int64 cp_server
    rate: np.ndarray  # float64 hitrate
    p1: np.ndarray  # uint16
    server: np.ndarray  # uint64 gid << 16 | p1
    rank: np.ndarray  # uint32 preference rank (0 = best)
    preference: np.ndarray  # int64: entry of each rank
    gids: np.ndarray  # uint64 sorted distinct gids of the entries
    gid_index: np.ndarray  # int64 index of each entry's gid in ``gids``
    strings: pa.Array  # feature string of each of ``gids``


def _hitrate_table(
    pair_keys: np.ndarray,
    pair_counts: np.ndarray,
    srv_keys: np.ndarray,
    srv_counts: np.ndarray,
    glob: Any,
    parts: list[SeedPartition],
) -> _HitrateTable:
    """Hitrates where ``count_p2 > 2``, and every entry's preference rank."""
    has_rate = pair_counts > MIN_COUNT_P2
    keys, count = pair_keys[has_rate], pair_counts[has_rate]
    gid = keys >> np.uint64(32)
    p1 = ((keys >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.uint16)
    server = (gid << np.uint64(16)) | p1.astype(np.uint64)
    cp = srv_counts[np.searchsorted(srv_keys, server)] if keys.size else srv_counts[:0]
    rate = count / cp
    gids, gid_index = cpu.unique_inverse(gid)
    strings = glob.strings(gids, parts)
    frank = _rank_strings(strings)[gid_index]
    preference = np.lexsort((frank, p1, -rate))
    rank = np.empty(preference.size, dtype=np.uint32)
    rank[preference] = np.arange(preference.size, dtype=np.uint32)
    return _HitrateTable(keys, count, cp, rate, p1, server, rank, preference, gids, gid_index, strings)


def _best_frame(part: SeedPartition, best: np.ndarray, table: _HitrateTable, hitrate: float) -> pd.DataFrame:
    """Patterns rows of a partition's counted services whose best predictor beats ``hitrate``."""
    found = np.flatnonzero(best != _NO_RANK)
    entry = table.preference[best[found].astype(np.int64)]
    keep = table.rate[entry] > hitrate
    found, entry = found[keep], entry[keep]
    return pd.DataFrame(
        {
            schema.IP: part.slot_ip[found],
            schema.P: pd.array(part.slot_port[found], dtype="UInt16"),
            schema.NEEDED_P: table.p1[entry],
            schema.COUNT_P2: pd.array(table.count[entry], dtype="Int64"),
            schema.HITRATE: pd.array(table.rate[entry], dtype="Float64"),
            schema.CP_SERVER: pd.array(table.cp[entry], dtype="Int64"),
            "_rated": table.gid_index[entry],
        }
    )


def _single_frame(part: SeedPartition) -> pd.DataFrame:
    """Patterns rows of a partition's single-port hosts: ``p`` null, ``neededP`` their port."""
    n = part.single_ip.size
    return pd.DataFrame(
        {
            schema.IP: part.single_ip,
            schema.P: pd.array([pd.NA] * n, dtype="UInt16"),
            schema.NEEDED_P: part.single_port,
            schema.COUNT_P2: pd.array([pd.NA] * n, dtype="Int64"),
            schema.HITRATE: pd.array([pd.NA] * n, dtype="Float64"),
            schema.CP_SERVER: pd.array([pd.NA] * n, dtype="Int64"),
            "_rated": np.full(n, -1, dtype=np.int64),
        }
    )


def _sum_counts(parts: list[SeedPartition]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for name, value in part.counts.items():
            total[name] = total.get(name, 0) + value
    return total


def _assemble_patterns(
    frames: list[pd.DataFrame], rated_gids: np.ndarray, rated_strings: pa.Array, fkeys: np.ndarray
) -> pd.DataFrame:
    patterns = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    rated = patterns.pop("_rated").to_numpy()
    has = rated >= 0
    # Strings stay in Arrow (a null index takes a null): no Python string objects.
    server = rated_strings.take(pa.array(np.where(has, rated, 0), mask=~has)).cast(pa.string())
    patterns[schema.SERVER] = pd.arrays.ArrowStringArray(server)
    patterns[schema.FKEY] = pd.arrays.IntegerArray(
        fkeys[rated_gids[np.where(has, rated, 0)].astype(np.int64)]
        if len(rated_gids)
        else np.zeros(len(has), np.uint64),
        ~has,
    )
    patterns[schema.IP] = patterns[schema.IP].astype(np.uint32)
    patterns[schema.NEEDED_P] = patterns[schema.NEEDED_P].astype(np.uint16)
    # Sort by (ip, p): p < 2**16 and a null p (single-port host) is alone on its ip.
    key = (patterns[schema.IP].to_numpy(np.uint64) << np.uint64(17)) | patterns[schema.P].fillna(0).to_numpy(
        np.uint64
    )
    order = np.argsort(key, kind="stable")
    return patterns.iloc[order].reset_index(drop=True)


def rules_of(patterns: pd.DataFrame, /) -> pd.DataFrame:
    """The rules of a patterns frame: distinct ``(neededP, fkey, p)`` with ``p`` not null.

    Parameters
    ----------
    patterns : pandas.DataFrame
        As in :class:`LearnResult` (``neededP, p, fkey, server, hitrate``).

    Returns
    -------
    pandas.DataFrame
        ``neededP uint16, fkey uint64, p uint16, score float64, server string``.
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

"""Phase 2 (``GPS_REFERENCE.md`` §5): services of the priors scan -> predicted services.

A priors service ``(ip, q)`` with feature ``f`` predicts ``(ip, p)`` for every rule ``(q, f, p)``.
Predictions in a (``/step`` prefix, port) the plan already scans, services of the seed and
blocklisted addresses are dropped; the rest is distinct. The features are those of the learn step
with ASN always on (the reference ignores ``UseASN`` here) and no host filter.

A prediction's ``score`` is, for now, the best hitrate among the patterns of the rules that made it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.features import DEFAULT_PRESET, feature_arrays_of_table, feature_columns
from gpsgpu.ops import cpu

#: Priors rows featurized and joined per chunk (one chunk per thread at a time).
DEFAULT_CHUNK_ROWS = 1 << 17


@dataclass(frozen=True)
class _RuleIndex:
    """The rules keyed for lookup: ``(feature index, q)`` groups, each a run of ``p``s."""

    features: np.ndarray  # uint64 sorted distinct rule fkeys
    group_key: np.ndarray  # uint64 feature index << 16 | q, sorted
    group_start: np.ndarray  # int64 first rule of each group (in the sorted rules)
    group_size: np.ndarray  # int64 rules in each group
    p: np.ndarray  # uint16 predicted port of each sorted rule
    rank: np.ndarray  # int64 score rank of each sorted rule (0 = best score)
    scores: np.ndarray  # float64 distinct scores, best first


def _index_rules(rules: pd.DataFrame) -> _RuleIndex:
    fkey = rules[schema.FKEY].to_numpy(np.uint64)
    features = cpu.unique_sorted(fkey)
    key = (np.searchsorted(features, fkey).astype(np.uint64) << np.uint64(16)) | rules[
        schema.NEEDED_P
    ].to_numpy(np.uint64)
    order = np.argsort(key, kind="stable")
    group_key, group_start, group_size = cpu.runs(key[order])
    # Scores are ranked once over the (few) rules, best first, so predictions carry small ranks.
    scores, rank = cpu.unique_inverse(-rules[schema.SCORE].to_numpy(np.float64))
    return _RuleIndex(
        features,
        group_key,
        group_start,
        group_size,
        rules[schema.P].to_numpy(np.uint16)[order],
        rank[order],
        -scores,
    )


def _chunk_predictions(
    table: pa.Table, index: _RuleIndex, preset: str = DEFAULT_PRESET
) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(service key, score rank)`` the rows of ``table`` predict (with repeats)."""
    ip_all = np.asarray(table[schema.IP]).astype(np.uint32, copy=False)
    features = feature_arrays_of_table(table, use_asn=True, preset=preset, workers=1)
    # Rules name few features: look up only the rows whose feature some rule names.
    fid_rule = cpu.lookup(index.features, features.fkeys)
    rows = np.flatnonzero(fid_rule[features.fid] >= 0)
    row_input = features.row[rows]
    port_all = np.asarray(table[schema.PORT]).astype(np.uint16, copy=False)
    row_key = (fid_rule[features.fid[rows]].astype(np.uint64) << np.uint64(16)) | port_all[row_input].astype(
        np.uint64
    )
    # A row matches one (feature, q) group: a run of rules, one per predicted port.
    group = cpu.lookup(index.group_key, row_key)
    hit = np.flatnonzero(group >= 0)
    n_match = index.group_size[group[hit]]
    matched = np.repeat(hit, n_match)
    rule_at = np.repeat(index.group_start[group[hit]] - (np.cumsum(n_match) - n_match), n_match)
    rule_at += np.arange(matched.size)
    return schema.pack_service(ip_all[row_input[matched]], index.p[rule_at]), index.rank[rule_at]


def predict_services(
    priors: Any,
    rules: pd.DataFrame,
    /,
    *,
    plan: pd.DataFrame,
    seed: pd.DataFrame,
    step: int,
    blocklist: Blocklist | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    preset: str = DEFAULT_PRESET,
) -> pd.DataFrame:
    """Predicted services of one partition of the priors scan.

    Parameters
    ----------
    priors : frame
        Services (``ip uint32, port uint16, asn uint32, protocol str, window int32, banner str``,
        optional ``tls_cert``), pandas or cuDF.
    rules : pandas.DataFrame
        ``neededP uint16, fkey uint64, p uint16, score float64`` (distinct ``(neededP, fkey, p)``).
    plan : pandas.DataFrame
        ``neededP uint16, prefix uint32``: the plan rows (before any blocklist cut).
    seed : pandas.DataFrame
        ``ip uint32, port uint16``: the seed's services.
    step : int
        Prefix length of the plan rows.
    blocklist : Blocklist, optional
        Addresses never to predict.
    chunk_rows : int
        Priors rows featurized and joined per chunk; chunks run on up to ``workers`` threads
        (default: every core), and their predictions are merged (the result does not depend on
        either).
    preset : str
        Feature preset of the model the rules come from (its features are computed here).

    Returns
    -------
    pandas.DataFrame
        ``ip uint32, port uint16, score float32``, distinct ``(ip, port)``, sorted.
    """
    empty = pd.DataFrame(
        {
            schema.IP: np.zeros(0, np.uint32),
            schema.PORT: np.zeros(0, np.uint16),
            schema.SCORE: np.zeros(0, np.float32),
        }
    )
    if len(priors) == 0 or len(rules) == 0:
        return empty
    index = _index_rules(rules)
    table = schema.frame_to_arrow(priors[feature_columns(priors.columns, preset)])
    starts = list(range(0, table.num_rows, chunk_rows))
    workers = min(workers or os.cpu_count() or 1, len(starts))

    def one(start: int) -> tuple[np.ndarray, np.ndarray]:
        return _chunk_predictions(table.slice(start, chunk_rows), index, preset)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(one, starts))
    else:
        parts = [one(start) for start in starts]
    service, rank = _best_per_service(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    )
    score = index.scores[rank]

    # Drop what the seed has, what the plan scans already and blocklisted space.
    seed_key = schema.pack_service(seed[schema.IP].to_numpy(np.uint32), seed[schema.PORT].to_numpy(np.uint16))
    keep = ~_in_sorted(service, seed_key)
    ip, port = schema.unpack_service(service)
    plan_key = (plan[schema.NEEDED_P].to_numpy(np.uint64) << np.uint64(32)) | plan[schema.PREFIX].to_numpy(
        np.uint64
    )
    planned = (port.astype(np.uint64) << np.uint64(32)) | schema.prefix_of(ip, step).astype(np.uint64)
    keep &= ~cpu.sorted_isin(planned, plan_key)
    if blocklist is not None and len(blocklist):
        keep &= ~np.asarray(blocklist.contains(ip))
    ip, port, score = ip[keep], port[keep], score[keep]
    return pd.DataFrame({schema.IP: ip, schema.PORT: port, schema.SCORE: score.astype(np.float32)})


def _best_per_service(service: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct services (sorted) and the smallest score rank (the best score) of each.

    With fewer than 2**16 distinct ranks, a rank goes into the 16 bits a service key leaves free
    and one value sort does the work; else a two-key lexsort.
    """
    if service.size == 0:
        return service, rank
    if int(rank.max()) < 1 << 16:
        packed = np.sort((service << np.uint64(16)) | rank.astype(np.uint64))
        first = np.concatenate(([True], (packed[1:] >> np.uint64(16)) != (packed[:-1] >> np.uint64(16))))
        best = packed[first]
        return best >> np.uint64(16), (best & np.uint64(0xFFFF)).astype(np.int64)
    order = np.lexsort((rank, service))
    service, rank = service[order], rank[order]
    first = np.concatenate(([True], service[1:] != service[:-1]))
    return service[first], rank[first]


def _in_sorted(sorted_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which of ``sorted_values`` (sorted) are among ``keys``: a binary search of sorted queries,
    which walks ``keys`` (sorted here if need be) in order."""
    if sorted_values.size == 0 or keys.size == 0:
        return np.zeros(sorted_values.size, dtype=bool)
    if keys.size > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
        keys = np.sort(keys)
    at = np.minimum(np.searchsorted(keys, sorted_values), keys.size - 1)
    return keys[at] == sorted_values

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
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.backend import Backend, backend_of
from gpsgpu.blocklist import Blocklist
from gpsgpu.features import DEFAULT_PRESET, feature_arrays_of_table, feature_columns
from gpsgpu.ops import cpu, ops_for

#: Priors rows featurized and joined per chunk (one chunk per thread at a time).
DEFAULT_CHUNK_ROWS = 1 << 17


@dataclass(frozen=True)
class PredictTables:
    """What every priors partition is predicted against, keyed for lookups (arrays on one backend).

    The rules form ``(feature index, q)`` groups, each a run of predicted ports; the seed's services
    and the plan's rows are sorted keys to drop. Build with :func:`prepare_predict`; :meth:`on`
    moves them to the backend of a partition once (they are small beside a priors scan).
    """

    features: Any  # uint64 sorted distinct rule fkeys
    group_key: Any  # uint64 feature index << 16 | q, sorted
    group_start: Any  # int64 first rule of each group (in the sorted rules)
    group_size: Any  # int64 rules in each group
    p: Any  # uint16 predicted port of each sorted rule
    rank: Any  # int64 score rank of each sorted rule (0 = best score)
    scores: Any  # float64 distinct scores, best first
    seed_keys: Any  # uint64 ip << 16 | port of the seed's services, sorted
    plan_keys: Any  # uint64 neededP << 32 | prefix of the plan's rows, sorted
    step: int
    blocklist: Blocklist | None

    @property
    def n_rules(self) -> int:
        return int(self.p.size)

    def on(self, backend: Backend) -> PredictTables:
        """These tables with their arrays on ``backend``."""
        move = ops_for(backend).asarray
        arrays = {
            name: move(getattr(self, name))
            for name in ("features", "group_key", "group_start", "group_size", "p", "rank", "scores")
        }
        return PredictTables(
            **arrays,
            seed_keys=move(self.seed_keys),
            plan_keys=move(self.plan_keys),
            step=self.step,
            blocklist=self.blocklist,
        )


def prepare_predict(
    rules: pd.DataFrame, /, *, plan: pd.DataFrame, seed: pd.DataFrame, step: int, blocklist: Blocklist | None
) -> PredictTables:
    """Key the rules, the seed and the plan rows for :func:`predict_services` (host arrays).

    Parameters
    ----------
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
    """
    fkey = rules[schema.FKEY].to_numpy(np.uint64)
    features = cpu.unique_sorted(fkey)
    key = (np.searchsorted(features, fkey).astype(np.uint64) << np.uint64(16)) | rules[
        schema.NEEDED_P
    ].to_numpy(np.uint64)
    order = np.argsort(key, kind="stable")
    group_key, group_start, group_size = cpu.runs(key[order])
    # Scores are ranked once over the (few) rules, best first, so predictions carry small ranks.
    scores, rank = cpu.unique_inverse(-rules[schema.SCORE].to_numpy(np.float64))
    seed_keys = cpu.unique_sorted(
        schema.pack_service(seed[schema.IP].to_numpy(np.uint32), seed[schema.PORT].to_numpy(np.uint16))
    )
    plan_keys = cpu.unique_sorted(
        (plan[schema.NEEDED_P].to_numpy(np.uint64) << np.uint64(32)) | plan[schema.PREFIX].to_numpy(np.uint64)
    )
    return PredictTables(
        features=features,
        group_key=group_key,
        group_start=group_start,
        group_size=group_size,
        p=rules[schema.P].to_numpy(np.uint16)[order],
        rank=rank[order],
        scores=-scores,
        seed_keys=seed_keys,
        plan_keys=plan_keys,
        step=step,
        blocklist=blocklist,
    )


def _chunk_predictions(table: Any, tables: PredictTables, preset: str = DEFAULT_PRESET) -> tuple[Any, Any]:
    """Every ``(service key, score rank)`` the rows of ``table`` predict (with repeats), on the
    table's backend."""
    ops = ops_for(backend_of(table))
    xp = ops.namespace()
    ip_all = ops.table_column(table, schema.IP, np.uint32)
    features = feature_arrays_of_table(table, use_asn=True, preset=preset, workers=1)
    # Rules name few features: look up only the rows whose feature some rule names.
    fid_rule = ops.lookup(tables.features, features.fkeys)
    rows = xp.flatnonzero(fid_rule[features.fid] >= 0)
    row_input = features.row[rows]
    port_all = ops.table_column(table, schema.PORT, np.uint16)
    row_key = (fid_rule[features.fid[rows]].astype(xp.uint64) << xp.uint64(16)) | port_all[row_input].astype(
        xp.uint64
    )
    # A row matches one (feature, q) group: a run of rules, one per predicted port.
    group = ops.lookup(tables.group_key, row_key)
    hit = xp.flatnonzero(group >= 0)
    n_match = tables.group_size[group[hit]]
    matched = ops.repeat(hit, n_match)
    rule_at = ops.repeat(tables.group_start[group[hit]] - (xp.cumsum(n_match) - n_match), n_match)
    rule_at += xp.arange(matched.size)
    return schema.pack_service(ip_all[row_input[matched]], tables.p[rule_at]), tables.rank[rule_at]


def predict_services(
    priors: Any,
    rules: pd.DataFrame | PredictTables,
    /,
    *,
    plan: pd.DataFrame | None = None,
    seed: pd.DataFrame | None = None,
    step: int | None = None,
    blocklist: Blocklist | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    preset: str = DEFAULT_PRESET,
) -> pd.DataFrame:
    """Predicted services of one partition of the priors scan, computed on its backend.

    Parameters
    ----------
    priors : frame
        Services (``ip uint32, port uint16, asn uint32, protocol str, window int32, banner str``,
        optional ``tls_cert``), pandas or cuDF (features, joins and reductions then run on the
        device; only the predictions come back).
    rules : pandas.DataFrame or PredictTables
        ``neededP uint16, fkey uint64, p uint16, score float64`` (distinct ``(neededP, fkey, p)``),
        or the tables :func:`prepare_predict` made of them, the plan, the seed, the step and the
        blocklist (then ``plan``, ``seed``, ``step`` and ``blocklist`` are not given).
    plan, seed, step, blocklist
        As in :func:`prepare_predict`, with a rules frame.
    chunk_rows : int
        Priors rows featurized and joined per chunk on the host; chunks run on up to ``workers``
        threads (default: every core), and their predictions are merged (the result does not
        depend on either). The device takes the partition in one chunk.
    preset : str
        Feature preset of the model the rules come from (its features are computed here).

    Returns
    -------
    pandas.DataFrame
        ``ip uint32, port uint16, score float32``, distinct ``(ip, port)``, sorted.
    """
    if not isinstance(rules, PredictTables):
        if plan is None or seed is None or step is None:
            raise TypeError("predict_services needs plan, seed and step with a rules frame")
        rules = prepare_predict(rules, plan=plan, seed=seed, step=step, blocklist=blocklist)
    empty = pd.DataFrame(
        {
            schema.IP: np.zeros(0, np.uint32),
            schema.PORT: np.zeros(0, np.uint16),
            schema.SCORE: np.zeros(0, np.float32),
        }
    )
    if len(priors) == 0 or rules.n_rules == 0:
        return empty
    backend = backend_of(priors)
    ops = ops_for(backend)
    xp = ops.namespace()
    tables = rules.on(backend)
    table = ops.table_of(priors, feature_columns(priors.columns, preset))
    n_rows = ops.table_rows(table)
    if backend is Backend.GPU:
        chunk_rows = max(chunk_rows, n_rows)
    starts = list(range(0, n_rows, chunk_rows))
    workers = min(workers or os.cpu_count() or 1, len(starts))

    def one(start: int) -> tuple[Any, Any]:
        return _chunk_predictions(ops.table_slice(table, start, chunk_rows), tables, preset)

    if workers > 1 and backend is Backend.CPU:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(one, starts))
    else:
        parts = [one(start) for start in starts]
    service, rank = _best_per_service(
        ops, xp.concatenate([p[0] for p in parts]), xp.concatenate([p[1] for p in parts])
    )
    score = tables.scores[rank]

    # Drop what the seed has, what the plan scans already and blocklisted space.
    keep = ~_in_sorted(ops, service, tables.seed_keys)
    ip, port = schema.unpack_service(service)
    planned = (port.astype(xp.uint64) << xp.uint64(32)) | schema.prefix_of(ip, tables.step).astype(xp.uint64)
    keep &= ~ops.sorted_isin(planned, tables.plan_keys)
    if tables.blocklist is not None and len(tables.blocklist):
        keep &= ~xp.asarray(tables.blocklist.contains(ip))
    ip, port, score = ip[keep], port[keep], score[keep].astype(xp.float32)
    return pd.DataFrame(
        {schema.IP: ops.to_host(ip), schema.PORT: ops.to_host(port), schema.SCORE: ops.to_host(score)}
    )


def _best_per_service(ops: ModuleType, service: Any, rank: Any) -> tuple[Any, Any]:
    """Distinct services (sorted) and the smallest score rank (the best score) of each.

    With fewer than 2**16 distinct ranks, a rank goes into the 16 bits a service key leaves free
    and one value sort does the work; else a two-key lexsort.
    """
    xp = ops.namespace()
    if service.size == 0:
        return service, rank
    if int(rank.max()) < 1 << 16:
        packed = xp.sort((service << xp.uint64(16)) | rank.astype(xp.uint64))
        first = xp.concatenate(
            (xp.ones(1, dtype=bool), (packed[1:] >> xp.uint64(16)) != (packed[:-1] >> xp.uint64(16)))
        )
        best = packed[first]
        return best >> xp.uint64(16), (best & xp.uint64(0xFFFF)).astype(xp.int64)
    order = xp.lexsort(xp.stack([rank.astype(xp.uint64), service]))
    service, rank = service[order], rank[order]
    first = xp.concatenate((xp.ones(1, dtype=bool), service[1:] != service[:-1]))
    return service[first], rank[first]


def _in_sorted(ops: ModuleType, sorted_values: Any, keys: Any) -> Any:
    """Which of ``sorted_values`` (sorted) are among ``keys`` (sorted): a binary search of sorted
    queries, which walks ``keys`` in order."""
    xp = ops.namespace()
    if sorted_values.size == 0 or keys.size == 0:
        return xp.zeros(sorted_values.size, dtype=bool)
    at = xp.minimum(xp.searchsorted(keys, sorted_values), keys.size - 1)
    return keys[at] == sorted_values

"""Phase 2 (``GPS_REFERENCE.md`` §5): observed services -> predicted services, the one predictor
of both modes.

An observed service ``(ip, q)`` with feature ``f`` predicts ``(ip, p)`` for every rule
``(q, f, p)``. Rules naming one ``ip:port`` are combined by ``max`` (GPS: the best rule's score,
its hitrate) or ``noisy-or`` (``1 - prod(1 - score_i)``, improved mode). Host rules (improved
mode) add, for every observed host, the ports its AS's rules name; a target named by both keeps the
higher score. Known services (the seed, services found, targets probed), space already scanned
(GPS: the plan's ``(/step, port)`` rows) and blocklisted addresses are dropped. The features are
those of the learn step with ASN always on (the reference ignores ``UseASN`` here) and no host
filter.

Every step runs on the backend of the observed frame, a host partition at a time: a service's
candidates all come from its own host, so partitions combine nothing between them.
"""

from __future__ import annotations

import itertools
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
from gpsgpu.progress import current_bar

COMBINE_CHOICES = ("max", "noisy-or")
#: Scores are capped below 1 so that ``log(1 - score)`` stays finite.
_MAX_SCORE = 1.0 - 1e-9

#: Priors rows featurized and joined per chunk (one chunk per thread at a time).
DEFAULT_CHUNK_ROWS = 1 << 17


@dataclass(frozen=True)
class PredictTables:
    """What every observed partition is predicted against, keyed for lookups (arrays on one
    backend).

    The rules form ``(feature index, q)`` groups, each a run of predicted ports; known services
    and scanned rows are sorted keys to drop. Build with :func:`prepare_predict`; :meth:`on` moves
    them to the backend of a partition once (they are small beside a priors scan).
    """

    features: Any  # uint64 sorted distinct rule fkeys
    group_key: Any  # uint64 feature index << 16 | q, sorted
    group_start: Any  # int64 first rule of each group (in the sorted rules)
    group_size: Any  # int64 rules in each group
    p: Any  # uint16 predicted port of each sorted rule
    rank: Any  # int64 score rank of each sorted rule (0 = best score)
    scores: Any  # float64 distinct scores, best first
    known: Any  # uint64 ip << 16 | port never to predict, sorted
    scanned: dict[int, Any]  # prefix length -> uint64 port << 32 | prefix of rows scanned, sorted
    blocklist: Blocklist | None
    host_asn: Any = None  # uint32 ASes of the host rules, sorted (ANY_ASN for the others)
    host_p: Any = None  # uint16 port of each host rule (in host_asn order)
    host_score: Any = None  # float64 score of each host rule
    skip_hosts: Any = None  # uint32 sorted addresses host rules never predict for (the seed's hosts)

    @property
    def n_rules(self) -> int:
        return int(self.p.size) + (int(self.host_p.size) if self.host_p is not None else 0)

    def on(self, backend: Backend) -> PredictTables:
        """These tables with their arrays on ``backend``."""
        move = ops_for(backend).asarray
        names = ("features", "group_key", "group_start", "group_size", "p", "rank", "scores", "known")
        optional = ("host_asn", "host_p", "host_score", "skip_hosts")
        return PredictTables(
            **{name: move(getattr(self, name)) for name in names},
            **{name: None if getattr(self, name) is None else move(getattr(self, name)) for name in optional},
            scanned={length: move(keys) for length, keys in self.scanned.items()},
            blocklist=self.blocklist,
        )


def prepare_predict(
    rules: pd.DataFrame,
    /,
    *,
    plan: pd.DataFrame | None = None,
    seed: pd.DataFrame | None = None,
    step: int | None = None,
    blocklist: Blocklist | None = None,
    known: np.ndarray | None = None,
    scanned: dict[int, np.ndarray] | None = None,
    host_rules: pd.DataFrame | None = None,
    skip_hosts: np.ndarray | None = None,
) -> PredictTables:
    """Key the rules and what not to predict for :func:`predict_services` (host arrays).

    Parameters
    ----------
    rules : pandas.DataFrame
        ``neededP uint16, fkey uint64, p uint16, score float64`` (distinct ``(neededP, fkey, p)``).
    plan, step : pandas.DataFrame, int
        GPS's plan rows (``neededP uint16, prefix uint32``, before any blocklist cut) and their
        prefix length: space scanned already.
    seed : pandas.DataFrame
        ``ip uint32, port uint16``: the seed's services (known).
    blocklist : Blocklist, optional
        Addresses never to predict.
    known : uint64 array, optional
        More ``ip << 16 | port`` never to predict (services found, targets probed).
    scanned : dict, optional
        More rows scanned, as :func:`gpsgpu.predict.ranked.scanned_keys` makes them.
    host_rules : pandas.DataFrame, optional
        ``asn uint32, p uint16, score float64`` (:func:`gpsgpu.learn.ranked.learn_host_rules`).
    skip_hosts : uint32 array, optional
        Addresses whose every port is known (the seed's hosts): host rules skip them.
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
    known_parts = [] if known is None else [np.asarray(known, np.uint64)]
    if seed is not None:
        known_parts.append(
            schema.pack_service(seed[schema.IP].to_numpy(np.uint32), seed[schema.PORT].to_numpy(np.uint16))
        )
    rows = {length: np.asarray(keys, np.uint64) for length, keys in (scanned or {}).items()}
    if plan is not None:
        if step is None:
            raise TypeError("prepare_predict needs the plan's step")
        planned = (plan[schema.NEEDED_P].to_numpy(np.uint64) << np.uint64(32)) | plan[schema.PREFIX].to_numpy(
            np.uint64
        )
        rows[step] = np.concatenate([rows.get(step, np.zeros(0, np.uint64)), planned])
    hosts: dict[str, Any] = {}
    if host_rules is not None and len(host_rules):
        # By AS, then port: a host's targets come out sorted (one rule per AS and port).
        by_asn = np.lexsort(
            (host_rules[schema.P].to_numpy(np.uint16), host_rules[schema.ASN].to_numpy(np.uint32))
        )
        hosts = {
            "host_asn": host_rules[schema.ASN].to_numpy(np.uint32)[by_asn],
            "host_p": host_rules[schema.P].to_numpy(np.uint16)[by_asn],
            "host_score": host_rules[schema.SCORE].to_numpy(np.float64)[by_asn],
            "skip_hosts": cpu.unique_sorted(np.asarray([] if skip_hosts is None else skip_hosts, np.uint32)),
        }
    return PredictTables(
        features=features,
        group_key=group_key,
        group_start=group_start,
        group_size=group_size,
        p=rules[schema.P].to_numpy(np.uint16)[order],
        rank=rank[order],
        scores=-scores,
        known=_sorted_known(known_parts),
        scanned={length: cpu.unique_sorted(keys) for length, keys in rows.items()},
        blocklist=blocklist,
        **hosts,
    )


def _sorted_known(parts: list[np.ndarray]) -> np.ndarray:
    """Sorted distinct keys of ``parts``; one part already sorted and distinct (the targets of every
    round so far, tens of millions) is taken as it is, not copied twice more."""
    if not parts:
        return np.zeros(0, np.uint64)
    if len(parts) == 1 and (parts[0].size < 2 or bool(np.all(parts[0][1:] > parts[0][:-1]))):
        return parts[0]
    return cpu.unique_sorted(np.concatenate(parts))


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
    combine: str = "max",
    n_rules: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    preset: str = DEFAULT_PRESET,
) -> pd.DataFrame:
    """Predicted services of one host partition of observed services, computed on its backend.

    Parameters
    ----------
    priors : frame
        Observed services (``ip uint32, port uint16, asn uint32, protocol str, window int32, banner
        str``, optional ``tls_cert``), pandas or cuDF (features, joins and reductions then run on
        the device; only the predictions come back). Whole hosts.
    rules : pandas.DataFrame or PredictTables
        ``neededP uint16, fkey uint64, p uint16, score float64`` (distinct ``(neededP, fkey, p)``),
        or the tables :func:`prepare_predict` made of them, the plan, the seed, the step and the
        blocklist (then ``plan``, ``seed``, ``step`` and ``blocklist`` are not given).
    plan, seed, step, blocklist
        As in :func:`prepare_predict`, with a rules frame.
    combine : str
        ``max`` (GPS) or ``noisy-or``: how the rules naming one ``ip:port`` make its score.
    n_rules : bool
        Also return how many rules named each prediction.
    chunk_rows : int
        Rows featurized and joined per chunk on the host; chunks run on up to ``workers`` threads
        (default: every core), and their predictions are merged (the result does not depend on
        either). The device takes the partition in one chunk.
    preset : str
        Feature preset of the model the rules come from (its features are computed here).

    Returns
    -------
    pandas.DataFrame
        ``ip uint32, port uint16, score float32`` (``n_rules uint32``), distinct ``(ip, port)``,
        sorted.
    """
    if combine not in COMBINE_CHOICES:
        raise ValueError(f"combine must be one of {', '.join(COMBINE_CHOICES)}, not {combine!r}")
    if not isinstance(rules, PredictTables):
        if plan is None or seed is None or step is None:
            raise TypeError("predict_services needs plan, seed and step with a rules frame")
        rules = prepare_predict(rules, plan=plan, seed=seed, step=step, blocklist=blocklist)
    if len(priors) == 0 or rules.n_rules == 0:
        return _frame(np.zeros(0, np.uint64), np.zeros(0, np.float32), np.zeros(0, np.uint32), n_rules)
    backend = backend_of(priors)
    ops = ops_for(backend)
    xp = ops.namespace()
    tables = rules.on(backend)
    table = ops.table_of(priors, feature_columns(priors.columns, preset))
    n_rows = ops.table_rows(table)
    if backend is Backend.GPU:
        chunk_rows = max(chunk_rows, n_rows)
    bounds = _host_chunks(ops.table_column(table, schema.IP, np.uint32), chunk_rows)
    aligned = bounds is not None
    if bounds is None:
        bounds = [(start, min(start + chunk_rows, n_rows)) for start in range(0, n_rows, chunk_rows)]
    workers = min(workers or os.cpu_count() or 1, len(bounds))
    # A caller's progress bar over observed services (a predict round), advanced as chunks finish.
    bar = current_bar()

    def one(bound: tuple[int, int]) -> tuple[Any, ...]:
        chunk = ops.table_slice(table, bound[0], bound[1] - bound[0])
        got = _chunk_predictions(chunk, tables, preset)
        if aligned:
            # Every candidate of a host is in its chunk: the chunk's predictions are final (and
            # combined here, on the chunk's thread, a chunk of candidates in memory at a time).
            got = _finish(ops, chunk, tables, *got, combine=combine, n_rules=n_rules)
        if bar is not None:
            bar.advance(bound[1] - bound[0])
        return got

    if workers > 1 and backend is Backend.CPU:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(one, bounds))
    else:
        parts = [one(bound) for bound in bounds]
    if aligned:
        # Chunks of ascending hosts, each sorted by service: their concatenation is sorted.
        # A column at a time, each chunk's piece dropped once copied: one column's copy at once.
        pieces = [list(column) for column in zip(*parts, strict=True)]
        del parts
        service, score, count = (_concatenate(column) if column[0] is not None else None for column in pieces)
        del pieces
    else:
        key = xp.concatenate([p[0] for p in parts])
        rank = xp.concatenate([p[1] for p in parts])
        del parts  # the chunks' candidates, a partition's largest arrays with these
        service, score, count = _finish(ops, table, tables, key, rank, combine=combine, n_rules=n_rules)
        del key, rank
    return _frame(service, score, count, n_rules)


def _concatenate(pieces: list[np.ndarray]) -> np.ndarray:
    """The pieces end to end; the list is emptied as they are copied."""
    out = np.empty(sum(piece.size for piece in pieces), dtype=pieces[0].dtype)
    at = 0
    while pieces:
        piece = pieces.pop(0)
        out[at : at + piece.size] = piece
        at += piece.size
        del piece
    return out


def _host_chunks(ip: Any, chunk_rows: int) -> list[tuple[int, int]] | None:
    """Row ranges of about ``chunk_rows`` rows that never split a host, when the rows are in
    address order (a services table is; a host's rows are then contiguous); else None."""
    n_rows = int(ip.size)
    if n_rows <= chunk_rows:
        return [(0, n_rows)]
    ops = ops_for(backend_of(ip))
    xp = ops.namespace()
    if not bool((ip[1:] >= ip[:-1]).all()):
        return None
    # Each cut moves back to the first row of the host it falls in.
    cuts = xp.searchsorted(ip, ip[xp.arange(chunk_rows, n_rows, chunk_rows)], side="left")
    edges = sorted({0, n_rows, *(int(c) for c in ops.to_host(cuts).tolist())})
    return list(itertools.pairwise(edges))


def _finish(
    ops: ModuleType, table: Any, tables: PredictTables, key: Any, rank: Any, *, combine: str, n_rules: bool
) -> tuple[Any, Any, Any]:
    """The predictions of the rows of ``table`` (whole hosts) from all their candidates: combined,
    with the host rules' targets, without what is known, scanned or blocklisted; on the host:
    ``service uint64`` (sorted), ``score float32``, ``count`` (None unless ``n_rules``)."""
    xp = ops.namespace()
    service, score, count = _combine(ops, key, rank, tables.scores, combine, counts=n_rules)
    del key, rank
    if tables.host_p is not None:
        service, score, count = _with_host_rules(ops, table, tables, service, score, count)
    keep = ~drop_mask(service, tables, ordered=True)
    # Each array is replaced as it is cut: tens of millions of predictions per partition.
    service = ops.to_host(service[keep])
    score = ops.to_host(score[keep].astype(xp.float32))
    count = None if count is None else ops.to_host(count[keep].astype(xp.uint32))
    return service, score, count


def drop_mask(service: Any, tables: PredictTables, *, ordered: bool = False) -> Any:
    """Which services (``ip << 16 | port`` keys) not to predict: known, in scanned space, or
    blocklisted. ``ordered``: the keys are sorted."""
    ops = ops_for(backend_of(service))
    xp = ops.namespace()
    if not tables.known.size:
        drop = xp.zeros(service.size, dtype=bool)
    elif ordered or tables.known.size > 4 * service.size:
        # A binary search each: sorted keys walk the known keys in order (twice as fast as a hash
        # table of them), and many more known services than keys (a later round's known
        # targets) would make a large hash table for few queries.
        at = xp.minimum(xp.searchsorted(tables.known, service), tables.known.size - 1)
        drop = tables.known[at] == service
        del at
    else:
        drop = ops.sorted_isin(service, tables.known)
    ip, port = schema.unpack_service(service)
    drop |= in_scanned(ip, port, tables.scanned)
    if tables.blocklist is not None and len(tables.blocklist):
        drop |= xp.asarray(tables.blocklist.contains(ip))
    return drop


def in_scanned(ip: Any, port: Any, scanned: dict[int, Any]) -> Any:
    """Which ``(ip, port)`` lie in a scanned row (``scanned``: prefix length -> sorted
    ``port << 32 | prefix`` keys, as :func:`gpsgpu.predict.ranked.scanned_keys` makes them)."""
    ops = ops_for(backend_of(ip))
    xp = ops.namespace()
    hit = xp.zeros(ip.size, dtype=bool)
    for length, keys in scanned.items():
        if keys.size:
            net = schema.prefix_of(ip, length).astype(xp.uint64)
            hit |= ops.sorted_isin((port.astype(xp.uint64) << xp.uint64(32)) | net, xp.asarray(keys))
    return hit


def _frame(service: np.ndarray, score: np.ndarray, count: np.ndarray | None, n_rules: bool) -> pd.DataFrame:
    ip, port = schema.unpack_service(service)
    columns = {schema.IP: ip, schema.PORT: port, schema.SCORE: score.astype(np.float32, copy=False)}
    if n_rules:
        columns[schema.N_RULES] = (
            count.astype(np.uint32, copy=False) if count is not None else np.ones(service.size, np.uint32)
        )
    return pd.DataFrame(columns, copy=False)


def _combine(
    ops: ModuleType, key: Any, rank: Any, scores: Any, combine: str, *, counts: bool = True
) -> tuple[Any, Any, Any]:
    """Distinct services (sorted), their combined score (float64) and, with ``counts``, how many
    rules named each (else None), from every candidate's service key and score rank
    (``scores[rank]``, best first)."""
    xp = ops.namespace()
    if key.size == 0:
        return key, scores[:0], xp.zeros(0, xp.int64) if counts else None
    service, start, rank = _by_service(ops, key, rank)
    count = xp.diff(start, append=int(rank.size)) if counts else None
    if combine == "max":
        # A service's candidates come by rank, best first.
        return service, scores[rank[start]], count
    # Each distinct score's log-miss once, not once per candidate; the sums run in rank order, so a
    # service's score does not depend on how its candidates were chunked or partitioned.
    log_miss = xp.log1p(-xp.minimum(scores, _MAX_SCORE))
    return service, -xp.expm1(ops.segment_sum(log_miss[rank], start)), count


def _with_host_rules(
    ops: ModuleType, table: Any, tables: PredictTables, service: Any, score: Any, count: Any
) -> tuple[Any, Any, Any]:
    """Service-rule predictions (sorted) plus host-rule ones, one per target: a host rule says less
    than the service rules naming the same target (it is what any host of the AS runs), so a target
    keeps the higher of its two scores rather than combining them."""
    from gpsgpu.learn.ranked import ANY_ASN

    xp = ops.namespace()
    ip = ops.table_column(table, schema.IP, np.uint32)
    asn = ops.table_column(table, schema.ASN, np.uint32)
    hosts, first = ops.unique_first(ip)
    asn = asn[first]
    if tables.skip_hosts.size:
        keep = ~ops.sorted_isin(hosts, tables.skip_hosts)
        hosts, asn = hosts[keep], asn[keep]
    # A host of an AS with rules gets that AS's rules, any other host the all-ASes rules.
    asn = xp.where(ops.sorted_isin(asn, ops.unique_sorted(tables.host_asn)), asn, xp.uint32(ANY_ASN))
    lo = xp.searchsorted(tables.host_asn, asn, side="left")
    n = xp.searchsorted(tables.host_asn, asn, side="right") - lo
    # Host h's rules are rows lo[h] .. lo[h] + n[h] - 1, by port: the keys come out sorted.
    rule_row = ops.repeat(lo - (xp.cumsum(n) - n), n) + xp.arange(int(n.sum()), dtype=xp.int64)
    h_key = schema.pack_service(ops.repeat(hosts, n), tables.host_p[rule_row])
    h_score = tables.host_score[rule_row]
    del rule_row, lo, n
    if count is None:
        count = xp.ones(service.size, dtype=xp.int64)
    # ``service`` is sorted: a binary search each, no hash table of the (many) predictions.
    pos = xp.searchsorted(service, h_key)
    at = xp.minimum(pos, max(int(service.size) - 1, 0))
    both = (service[at] == h_key) if service.size else xp.zeros(h_key.size, dtype=bool)
    score = score.astype(xp.float64, copy=True)
    # Several host rules never name one target (one AS per host, one rule per port).
    score[at[both]] = xp.maximum(score[at[both]], h_score[both])
    new = ~both
    del at, both
    h_key, h_score, pos = h_key[new], h_score[new], pos[new]
    del new
    # Merge the two sorted key lists: new target j goes before the services not below it.
    is_host = xp.zeros(service.size + h_key.size, dtype=bool)
    is_host[pos + xp.arange(h_key.size, dtype=xp.int64)] = True
    del pos
    is_service = ~is_host
    merged_key = xp.empty(is_host.size, dtype=service.dtype)
    merged_key[is_host], merged_key[is_service] = h_key, service
    merged_score = xp.empty(is_host.size, dtype=xp.float64)
    merged_score[is_host], merged_score[is_service] = h_score, score
    del h_key, h_score, score
    merged_count = xp.empty(is_host.size, dtype=count.dtype)
    merged_count[is_host], merged_count[is_service] = 1, count
    return merged_key, merged_score, merged_count


def _by_service(ops: ModuleType, service: Any, rank: Any) -> tuple[Any, Any, Any]:
    """The candidates sorted by service, then rank: the distinct services, the first candidate
    of each, and the sorted ranks.

    With fewer than 2**16 distinct ranks, a rank goes into the 16 bits a service key leaves free
    and one value sort does the work (no index array, no gathers); else a two-key lexsort.
    """
    xp = ops.namespace()
    if int(rank.max()) < 1 << 16:
        packed = (service << xp.uint64(16)) | rank.astype(xp.uint64)
        ops.sort_in_place(packed)  # each chunk's candidates come nearly in service order
        # Ranks below 2**16: their uint64 bits are their int64 bits (an index dtype on both devices).
        rank = (packed & xp.uint64(0xFFFF)).view(xp.int64)
        packed >>= xp.uint64(16)
        service = packed
    else:
        order = ops.lexsort([rank.astype(xp.uint64), service])
        service, rank = service[order], rank[order]
        del order
    new = xp.empty(service.size, dtype=bool)
    new[0] = True
    xp.not_equal(service[1:], service[:-1], out=new[1:])
    start = xp.flatnonzero(new)
    return service[start], start, rank

"""Improved mode, phase 2: ranked predictions with combined scores, budgets and rounds.

The predictions come from the one predictor (:func:`gpsgpu.predict.predict_services`), a host
partition of the observed services at a time: each observed service ``(ip, q)`` with feature
``f`` predicts ``(ip, p)`` for every rule ``(q, f, p)`` with the rule's score, and the rules naming
one ``ip:port`` are combined:

- ``noisy-or`` (default): ``1 - prod(1 - score_i)``, the probability that at least one rule is
  right if rules erred independently. Rules of one service are correlated (a banner line and its
  /16 cross say much the same), so it overstates a little, but it ranks a target that several
  different signals point to above one that a single rule names; on the simulated Internet it finds
  more services than ``max`` within the first millions of probes (where the budget goes), and the
  same at the end;
- ``max``: the best single rule (compatible mode's choice).

Host rules (:func:`gpsgpu.learn.ranked.learn_host_rules`) add a prediction ``(ip, p)`` for every
observed host and every port its AS's rules name (hosts of the seed, scanned on every port, never);
a target that service rules name too keeps the higher of the two scores.

Here the partitions' predictions are ranked best first (score desc, then ``(ip, port)``) and cut by
``min_score`` and a probe ``budget``: :func:`rank_predictions` in memory, or :func:`rank_partitions`
(each partition sorted on its own, a run) and :func:`merge_ranked` (the runs merged block by block,
the same rows in the same order), which ``gpsgpu predict`` runs with the runs on disk. What is
already known or already probed is dropped: the seed, services found so far, targets probed in
earlier rounds, space the plan scans and blocklisted addresses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.config import DEFAULT_PRIORS_PER_PARTITION
from gpsgpu.distributed import SERIAL, Mapper
from gpsgpu.features import DEFAULT_PRESET
from gpsgpu.ops import cpu
from gpsgpu.predict.services import (
    COMBINE_CHOICES,
    PredictTables,
    in_scanned,
    predict_services,
    prepare_predict,
)
from gpsgpu.progress import current_bar

#: Observed services predicted per host partition (bounds the candidate joins' memory).
DEFAULT_PARTITION_ROWS = DEFAULT_PRIORS_PER_PARTITION["improved"]


def empty_predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            schema.IP: np.zeros(0, np.uint32),
            schema.PORT: np.zeros(0, np.uint16),
            schema.SCORE: np.zeros(0, np.float32),
            schema.N_RULES: np.zeros(0, np.uint32),
        }
    )


def scanned_keys(ports: np.ndarray, prefixes: np.ndarray, lengths: np.ndarray) -> dict[int, np.ndarray]:
    """Plan rows as sorted ``port << 32 | prefix`` keys, one array per prefix length."""
    ports = np.asarray(ports, np.uint64)
    prefixes = np.asarray(prefixes, np.uint32)
    lengths = np.asarray(lengths, np.int64)
    out: dict[int, np.ndarray] = {}
    for length in np.unique(lengths).tolist():
        sel = lengths == length
        net = schema.prefix_of(prefixes[sel], int(length)).astype(np.uint64)
        out[int(length)] = cpu.unique_sorted((ports[sel] << np.uint64(32)) | net)
    return out


def rank_predictions(
    observed: Any,
    rules: pd.DataFrame,
    /,
    *,
    known: np.ndarray | None = None,
    scanned: dict[int, np.ndarray] | None = None,
    blocklist: Blocklist | None = None,
    combine: str = "noisy-or",
    min_score: float = 0.0,
    budget: int | None = None,
    preset: str = DEFAULT_PRESET,
    host_rules: pd.DataFrame | None = None,
    skip_hosts: np.ndarray | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
) -> pd.DataFrame:
    """Ranked predictions of the observed services, best first.

    Parameters
    ----------
    observed : frame
        Services seen so far that may predict (the priors scan, services found in earlier rounds).
    rules : pandas.DataFrame
        ``neededP uint16, fkey uint64, p uint16, score float64``.
    known : uint64 array, optional
        ``ip << 16 | port`` never to predict: the seed, services found, targets already probed.
    scanned : dict, optional
        Plan rows already scanned (:func:`scanned_keys`).
    blocklist : Blocklist, optional
    combine : str
        ``noisy-or`` or ``max``.
    min_score : float
        Keep predictions whose score is at least this.
    budget : int, optional
        Keep at most this many predictions (one probe each), the best ones.
    host_rules : pandas.DataFrame, optional
        ``asn, p, score`` (:func:`gpsgpu.learn.ranked.learn_host_rules`): every observed host also
        predicts its AS's ports; a target named by service rules too takes the higher score.
    skip_hosts : uint32 array, optional
        Sorted addresses whose every port is known (the seed's hosts): host rules skip them.
    partition_rows : int
        Observed services per host partition predicted at once.

    Returns
    -------
    pandas.DataFrame
        ``ip uint32, port uint16, score float32, n_rules uint32`` sorted by score desc, then
        ``(ip, port)``.
    """
    keys, scores, counts = [], [], []
    for preds in _partition_predictions(
        observed, rules, known=known, scanned=scanned, blocklist=blocklist, combine=combine, preset=preset,
        host_rules=host_rules, skip_hosts=skip_hosts, partition_rows=partition_rows,
    ):  # fmt: skip
        keep = preds[schema.SCORE].to_numpy() >= np.float32(min_score)
        ip, port = preds[schema.IP].to_numpy()[keep], preds[schema.PORT].to_numpy()[keep]
        keys.append(schema.pack_service(ip, port))
        scores.append(preds[schema.SCORE].to_numpy()[keep])
        counts.append(preds[schema.N_RULES].to_numpy()[keep])
        del preds
    if not keys:
        return empty_predictions()
    key, score = np.concatenate(keys), np.concatenate(scores)
    del keys, scores
    # Best first, ties by (ip, port): the service key orders (ip, port) as one integer.
    order = np.lexsort((key, -score))
    if budget is not None:
        order = order[: max(int(budget), 0)]
    ip, port = schema.unpack_service(key[order])
    return pd.DataFrame(
        {
            schema.IP: ip,
            schema.PORT: port,
            schema.SCORE: score[order],
            schema.N_RULES: np.concatenate(counts)[order],
        }
    )


def rank_partitions(
    observed: Any,
    rules: pd.DataFrame,
    /,
    *,
    known: np.ndarray | None = None,
    scanned: dict[int, np.ndarray] | None = None,
    blocklist: Blocklist | None = None,
    combine: str = "noisy-or",
    preset: str = DEFAULT_PRESET,
    host_rules: pd.DataFrame | None = None,
    skip_hosts: np.ndarray | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    by_port: bool = False,
    mapper: Mapper = SERIAL,
) -> Iterator[pd.DataFrame]:
    """:func:`rank_predictions` a host partition at a time: each partition's predictions, sorted
    best first (:func:`sort_ranked`), as the partitions are predicted.

    The partitions hold distinct hosts, so their predictions are distinct services:
    :func:`merge_ranked` of what this yields is :func:`rank_predictions` (``by_port``: the order of
    :func:`merge_held`), without every prediction in memory at once. Arguments as
    :func:`rank_predictions`; yields nothing where it returns no rows. With a ``mapper`` on a Dask
    cluster (:func:`gpsgpu.distributed.open_cluster`), the partitions are predicted and sorted on
    its workers (the tables broadcast once) and come back in partition order: the same runs.
    """
    yield from _partition_predictions(
        observed, rules, known=known, scanned=scanned, blocklist=blocklist, combine=combine, preset=preset,
        host_rules=host_rules, skip_hosts=skip_hosts, partition_rows=partition_rows, mapper=mapper,
        sort_by_port=by_port,
    )  # fmt: skip


def _partition_predictions(
    observed: Any,
    rules: pd.DataFrame,
    /,
    *,
    known: np.ndarray | None,
    scanned: dict[int, np.ndarray] | None,
    blocklist: Blocklist | None,
    combine: str,
    preset: str,
    host_rules: pd.DataFrame | None,
    skip_hosts: np.ndarray | None,
    partition_rows: int,
    mapper: Mapper = SERIAL,
    sort_by_port: bool | None = None,
) -> Iterator[pd.DataFrame]:
    """Each host partition's predictions (``ip, port, score, n_rules``), in partition order: what
    both rankers rank. Unsorted, or (``sort_by_port`` not None) sorted by :func:`sort_ranked` with
    ``by_port=sort_by_port``, on the ``mapper``'s workers (:func:`_rank_partition`)."""
    if combine not in COMBINE_CHOICES:
        raise ValueError(f"combine must be one of {', '.join(COMBINE_CHOICES)}, not {combine!r}")
    if len(observed) == 0 or (len(rules) == 0 and (host_rules is None or len(host_rules) == 0)):
        return
    tables = prepare_predict(
        rules, known=known, scanned=scanned, blocklist=blocklist, host_rules=host_rules, skip_hosts=skip_hosts
    )
    # Partitions are read one at a time (on a cluster a few per worker ahead, by the workers
    # themselves on a local one): never whole.
    parts = mapper.partitions(observed, max(1, math.ceil(len(observed) / partition_rows)))
    # A worker's chunks advance no bar here: the partitions do, as they come back.
    bar = current_bar() if mapper.distributed else None
    for preds, n_rows in mapper.imap(
        _rank_partition,
        parts,
        # The known keys, plan rows, blocklist and rules go to every worker once.
        tables=mapper.broadcast(tables),
        combine=combine,
        preset=preset,
        by_port=sort_by_port,
        # A worker process runs one partition on one core (its chunks on one thread), not one
        # thread per core in each worker.
        workers=1 if mapper.distributed else None,
    ):
        if bar is not None:
            bar.advance(n_rows)
        yield preds


def _rank_partition(
    part: Any,
    *,
    tables: PredictTables,
    combine: str,
    preset: str,
    by_port: bool | None,
    workers: int | None,
) -> tuple[pd.DataFrame, int]:
    """One host partition's predictions, ``ip, port, score, n_rules``, sorted best first
    (:func:`sort_ranked`) unless ``by_port`` is None, and the partition's rows (a
    :class:`~gpsgpu.distributed.Mapper` task)."""
    preds = predict_services(part, tables, combine=combine, n_rules=True, preset=preset, workers=workers)
    n_rows = len(part)
    del part
    if by_port is None:
        return preds, n_rows
    return sort_ranked(preds[[schema.IP, schema.PORT, schema.SCORE, schema.N_RULES]], by_port=by_port), n_rows


def _rank_keys(frame: pd.DataFrame, by_port: bool) -> tuple[np.ndarray, np.ndarray]:
    """The sort keys of ranked rows: the negated score (float64: ascending is best first) and the
    tie-break as one integer (``ip << 16 | port``, or ``port << 32 | ip`` when ``by_port``)."""
    ip = frame[schema.IP].to_numpy(np.uint32)
    port = frame[schema.PORT].to_numpy(np.uint16)
    tie = (
        (port.astype(np.uint64) << np.uint64(32)) | ip.astype(np.uint64)
        if by_port
        else schema.pack_service(ip, port)
    )
    return -frame[schema.SCORE].to_numpy(np.float64), tie


#: The bits of float32 +inf: a score's bits at most this are a number >= +0.
_PLUS_INF = 0x7F800000


def sort_ranked(preds: pd.DataFrame, /, *, by_port: bool = False) -> pd.DataFrame:
    """Predictions best first: score desc, then ``(ip, port)`` (:func:`rank_predictions`' order) or,
    with ``by_port``, then port, then ip (:func:`merge_held`'s)."""
    neg, tie = _rank_keys(preds, by_port)
    bits = preds[schema.SCORE].to_numpy()
    bits = bits.view(np.uint32) if bits.dtype == np.float32 else None
    if bits is not None and tie.size > 1 and bool(np.all(tie[1:] > tie[:-1])) and bits.max() <= _PLUS_INF:
        # Already in tie order (a partition's predictions come sorted by service): a stable sort
        # by score alone is the same order. On the bits of float32 scores >= +0 (no -0.0, no NaN:
        # their order as integers), inverted for best first, it is 1.4x faster than the lexsort.
        order = np.argsort(~bits, kind="stable")
    else:
        order = np.lexsort((tie, neg))
    return preds.iloc[order].reset_index(drop=True)


def merge_ranked(
    runs: Sequence[Iterator[pd.DataFrame]], /, *, by_port: bool = False
) -> Iterator[pd.DataFrame]:
    """The rows of sorted runs (:func:`sort_ranked`, one order for all) in that order, block by block.

    Each run is an iterator of frames (a run read a batch at a time). Every service is in one run
    at most, so the order is total and the blocks' concatenation is :func:`sort_ranked` of all the
    rows, whatever the runs and their batches. A block is every buffered row up to the smallest of
    the buffers' last rows: the rows of the runs after their buffers all come later.
    """
    sources = [iter(run) for run in runs]
    buffers: dict[int, tuple[pd.DataFrame, np.ndarray, np.ndarray]] = {}
    while True:
        for i in [i for i, source in enumerate(sources) if source is not None and i not in buffers]:
            for frame in sources[i]:  # type: ignore[union-attr]
                if len(frame):
                    buffers[i] = (frame, *_rank_keys(frame, by_port))
                    break
            else:
                sources[i] = None  # type: ignore[call-overload]
        if not buffers:
            return
        cut_neg, cut_tie = min((neg[-1], tie[-1]) for _, neg, tie in buffers.values())
        taken = []
        for i, (frame, neg, tie) in list(buffers.items()):
            lo, hi = np.searchsorted(neg, cut_neg, side="left"), np.searchsorted(neg, cut_neg, side="right")
            n = int(lo + np.searchsorted(tie[lo:hi], cut_tie, side="right"))
            if n == 0:
                continue
            taken.append(frame.iloc[:n])
            if n == len(frame):
                del buffers[i]
            else:
                buffers[i] = (frame.iloc[n:], neg[n:], tie[n:])
        yield sort_ranked(pd.concat(taken, ignore_index=True), by_port=by_port)


def isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which ``values`` occur in ``sorted_set`` (ascending, distinct): a binary search each, no hash
    table of the set (which may be every target probed so far)."""
    if values.size == 0 or sorted_set.size == 0:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[at] == values


def union_sorted_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted distinct values of two sorted distinct arrays, holding only them and the result
    (``cpu.union_sorted`` sorts their concatenation: three copies of tens of millions of keys)."""
    if a.size < b.size:
        a, b = b, a
    b = b[~isin_sorted(b, a)]
    return np.insert(a, np.searchsorted(a, b), b)


def held_keep(
    held: pd.DataFrame,
    /,
    *,
    predicted: np.ndarray,
    known: np.ndarray | None = None,
    scanned: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Which held-back predictions :func:`merge_held` keeps: those not ``predicted`` again (sorted
    keys), not ``known`` (sorted keys) and not in ``scanned`` rows."""
    h_ip, h_port = held[schema.IP].to_numpy(np.uint32), held[schema.PORT].to_numpy(np.uint16)
    h_key = schema.pack_service(h_ip, h_port)
    keep = ~isin_sorted(h_key, predicted)
    if known is not None and known.size:
        keep &= ~isin_sorted(h_key, known)
    if scanned:
        keep &= ~in_scanned(h_ip, h_port, scanned)
    return keep


def hold_back(preds: pd.DataFrame, /, *, min_score: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions scoring at least ``min_score`` (probed now) and the others (held back), both in order."""
    keep = preds[schema.SCORE].to_numpy() >= np.float32(min_score)
    if bool(keep.all()):  # nothing held back: no copy of what may be tens of millions of rows
        return preds, preds.iloc[:0].reset_index(drop=True)
    return preds[keep].reset_index(drop=True), preds[~keep].reset_index(drop=True)


def part_yield(found: np.ndarray, known: np.ndarray, probes: int) -> float:
    """New services per probe of a scan: its ``found`` service keys not in ``known`` (sorted keys
    known before it), over its ``probes``.

    After each part of a live tail, the predictions expected to hit at least this often
    (:func:`release_score`) are probed before the next part (the improved campaign's step after
    each tail part, :mod:`gpsgpu.campaign.schedule`): the tail's parts bring less and less per
    probe, so a prediction that beats the last part beats the next one too.
    """
    new = cpu.unique_sorted(np.asarray(found, np.uint64))
    new = new[~cpu.sorted_isin(new, np.asarray(known, np.uint64))]
    return float(new.size) / max(int(probes), 1)


#: Score bands per decade of the online calibration (:func:`calibration_counts`).
BANDS_PER_DECADE = 4
#: A band is calibrated by its own hit rate once this many of its predictions have been probed.
MIN_BAND_PROBES = 1000
#: Columns of a calibration table: band, probes, hits, sum of scores.
CALIBRATION_COLUMNS = ("band", "probes", "hits", "score_sum")


def calibration_counts(scores: np.ndarray, hit: np.ndarray) -> pd.DataFrame:
    """Probes, hits and summed scores of probed predictions, per score band (quarter decades).

    Counts add up (:func:`add_calibration`), so what each round probed is added to what the rounds
    before it probed.
    """
    score = np.asarray(scores, np.float64)
    band = np.floor(BANDS_PER_DECADE * np.log10(np.maximum(score, 1e-12))).astype(np.int64)
    frame = pd.DataFrame(
        {"band": band, "probes": 1, "hits": np.asarray(hit, bool).astype(np.int64), "score_sum": score}
    )
    return frame.groupby("band", as_index=False).sum().astype({"probes": np.int64, "hits": np.int64})


def add_calibration(*tables: pd.DataFrame | None) -> pd.DataFrame:
    """The sum of calibration tables (None or empty ones count as nothing)."""
    parts = [t for t in tables if t is not None and len(t)]
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype=np.float64 if c == "score_sum" else np.int64) for c in CALIBRATION_COLUMNS}
        )
    return pd.concat(parts, ignore_index=True).groupby("band", as_index=False).sum()


def release_score(calibration: pd.DataFrame | None, target_rate: float) -> float:
    """The lowest score whose predictions are expected to hit at least ``target_rate`` of the time.

    Scores rank predictions well but their scale is off by a factor that differs from one Internet
    to another (on the simulated ones, predictions scoring 0.002 to 0.003 hit 0.00026 to 0.00078 of the time),
    so the expected hit rate is what probing found: per score band (a quarter decade) of every
    prediction probed so far, made non-increasing towards low scores (pool adjacent violators,
    weighted by probes). Bands with fewer than MIN_BAND_PROBES probes are left out; below the lowest
    calibrated band, a score's rate is the score times that band's hits per unit of score; with
    no calibrated band at all, the score itself.
    """
    if calibration is None or len(calibration) == 0:
        return float(target_rate)
    table = calibration[calibration["probes"] >= MIN_BAND_PROBES].sort_values("band", ascending=False)
    if len(table) == 0:
        return float(target_rate)
    # Pool adjacent violators, from the highest band down: a block's rate never rises below it.
    blocks: list[list[float]] = []  # [hits, probes, highest band, lowest band]
    for band, probes, hits in zip(table["band"], table["probes"], table["hits"], strict=True):
        blocks.append([float(hits), float(probes), float(band), float(band)])
        while len(blocks) > 1 and blocks[-1][0] / blocks[-1][1] > blocks[-2][0] / blocks[-2][1]:
            h, n, _, low = blocks.pop()
            blocks[-1] = [blocks[-1][0] + h, blocks[-1][1] + n, blocks[-1][2], low]
    for hits, probes, high, _ in blocks:
        if hits / probes < target_rate:
            return float(10 ** ((high + 1) / BANDS_PER_DECADE))  # the block's upper edge
    lowest = table.iloc[-1]
    edge = 10 ** (float(lowest["band"]) / BANDS_PER_DECADE)
    per_score = float(lowest["hits"]) / max(float(lowest["score_sum"]), 1e-300)
    return float(min(edge, target_rate / per_score)) if per_score > 0 else float(edge)


def merge_held(
    preds: pd.DataFrame,
    held: pd.DataFrame | None,
    /,
    *,
    known: np.ndarray | None = None,
    scanned: dict[int, np.ndarray] | None = None,
) -> pd.DataFrame:
    """A round's predictions plus the ones an earlier round held back (:func:`hold_back`).

    A held-back ``ip:port`` predicted again takes its new score; the others keep theirs, unless they
    have been probed (``known``) or scanned (``scanned``, :func:`scanned_keys`) since. Best first
    (score desc, then port, then ip).
    """
    if held is None or len(held) == 0:
        return preds
    held = held[list(preds.columns)] if set(preds.columns) <= set(held.columns) else held
    h_ip, h_port = held[schema.IP].to_numpy(np.uint32), held[schema.PORT].to_numpy(np.uint16)
    h_key = schema.pack_service(h_ip, h_port)  # row by row (known_keys sorts)
    keep = ~cpu.sorted_isin(h_key, known_keys(preds))
    if known is not None and known.size:
        keep &= ~cpu.sorted_isin(h_key, known)
    if scanned:
        keep &= ~in_scanned(h_ip, h_port, scanned)
    out = pd.concat([preds, held[keep]], ignore_index=True)
    order = np.lexsort(
        (out[schema.IP].to_numpy(), out[schema.PORT].to_numpy(), -out[schema.SCORE].to_numpy(np.float64))
    )
    return out.iloc[order].reset_index(drop=True)


def known_keys(*frames: Any) -> np.ndarray:
    """Sorted distinct ``ip << 16 | port`` of frames with ``ip, port`` columns."""
    parts = [
        schema.pack_service(np.asarray(f[schema.IP], np.uint32), np.asarray(f[schema.PORT], np.uint16))
        for f in frames
        if f is not None and len(f)
    ]
    return cpu.unique_sorted(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


__all__ = [
    "COMBINE_CHOICES",
    "add_calibration",
    "calibration_counts",
    "empty_predictions",
    "held_keep",
    "hold_back",
    "in_scanned",
    "isin_sorted",
    "known_keys",
    "merge_held",
    "merge_ranked",
    "part_yield",
    "rank_partitions",
    "rank_predictions",
    "release_score",
    "scanned_keys",
    "sort_ranked",
    "union_sorted_keys",
]

"""Predictive scan blocking, replayed in time order (the port2dist paper's use case).

The policy: once a source's first probe is seen, the defender blocks that source on the ports it
has probed and on the ``k`` ports nearest to them (distance from a port to a set: the smallest
distance to any of its members), recomputed each time the source probes a new port. Scoring, per
source, over everything after its first probe:

- **new ports blocked** (the strict true-positive rate): the share of the source's later *distinct*
  ports that were among the ``k`` predicted ports when the source first probed them;
- **later probes blocked**: the share of its later probes that hit a blocked port, either a port it
  had probed already (the same port on the next host) or a predicted one;
- **false positives**: predicted ports the source never probed, as a count per source and as a
  share of all ports ever predicted for it.

Nearest ports come from a :class:`NeighborIndex` (a metric's neighbour lists), so port2dist and
every rival metric are replayed by the same code. With stored lists of ``K`` neighbours per port,
the ``k`` nearest ports to a set ``S`` are exact while ``k + |S| <= K``.

Decisions of one source never depend on another source, so the replay's result does not depend on
the order sources are interleaved; the time order only makes the progress display show the policy
being built as it would be live.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu.backend import to_numpy, values_of
from gpsgpu.portdist import columns as C
from gpsgpu.portdist.sequences import _group_ids

#: Replay progress callback: ``(events done, events total, per-campaign running totals)``.
ProgressFn = Callable[[int, int, dict[int, list[float]]], None]


@dataclass(frozen=True)
class NeighborIndex:
    """Each port's nearest ports, ascending by distance (ties by port).

    Attributes
    ----------
    lists : dict[int, tuple[np.ndarray, np.ndarray]]
        ``port -> (neighbor ports int64, distances float64)``.
    name : str
    """

    lists: dict[int, tuple[np.ndarray, np.ndarray]]
    name: str = ""

    @classmethod
    def from_frame(cls, neighbors: Any, name: str = "") -> NeighborIndex:
        """From ``port uint16, rank int16, neighbor uint16, distance float32`` rows."""
        port = np.asarray(to_numpy(values_of(neighbors[C.PORT])), dtype=np.int64)
        rank = np.asarray(to_numpy(values_of(neighbors[C.RANK])), dtype=np.int64)
        nbr = np.asarray(to_numpy(values_of(neighbors[C.NEIGHBOR])), dtype=np.int64)
        dist = np.asarray(to_numpy(values_of(neighbors[C.DISTANCE])), dtype=np.float64)
        order = np.lexsort((rank, port))
        port, nbr, dist = port[order], nbr[order], dist[order]
        cuts = np.flatnonzero(np.diff(port)) + 1
        lists = {
            int(p[0]): (n, d)
            for p, n, d in zip(np.split(port, cuts), np.split(nbr, cuts), np.split(dist, cuts), strict=True)
            if p.size
        }
        return cls(lists=lists, name=name)

    def nearest(self, port: int, k: int) -> np.ndarray:
        got = self.lists.get(int(port))
        return np.zeros(0, dtype=np.int64) if got is None else got[0][:k]


def replay_events(probes: Any, /) -> pd.DataFrame:
    """The first probe of every (source, port), in time order, with per-source totals.

    Parameters
    ----------
    probes : frame
        Output of :func:`gpsgpu.portdist.sequences.sort_probes` (``ts, src, dport`` and optionally
        ``campaign``), already restricted to the sources to replay.

    Returns
    -------
    pandas.DataFrame
        ``ts int64, source int64`` (dense source id), ``dport uint16``, sorted by ``ts, source``;
        ``.attrs["sources"]`` holds the per-source frame ``src uint32, campaign int32, n_probes
        int64, n_ports int64``.
    """
    ts = np.asarray(to_numpy(values_of(probes[C.TS])), dtype=np.int64)
    src = np.asarray(to_numpy(values_of(probes[C.SRC])), dtype=np.uint32)
    port = np.asarray(to_numpy(values_of(probes[C.DPORT])), dtype=np.uint16)
    has_campaign = C.CAMPAIGN in probes.columns
    campaign = (
        np.asarray(to_numpy(values_of(probes[C.CAMPAIGN])), dtype=np.int32)
        if has_campaign
        else np.full(src.size, -1, np.int32)
    )
    # Whole replay per source (not per day): a source is blocked from its first probe on.
    order = np.lexsort((port, ts, src))
    ts, src, port, campaign = ts[order], src[order], port[order], campaign[order]
    gid = _group_ids(np, src, np.zeros(src.size, dtype=np.int32))
    n_src = int(gid[-1]) + 1 if gid.size else 0
    first_of_src = np.flatnonzero(np.concatenate([[True], gid[1:] != gid[:-1]])) if gid.size else gid
    key = (gid.astype(np.uint64) << np.uint64(16)) | port.astype(np.uint64)
    _, first = np.unique(key, return_index=True)  # earliest row of each (source, port): rows are time sorted
    n_probes = np.bincount(gid, minlength=n_src)
    n_ports = np.bincount(gid[first], minlength=n_src)
    events = pd.DataFrame({C.TS: ts[first], "source": gid[first], C.DPORT: port[first]})
    events = events.sort_values([C.TS, "source", C.DPORT], kind="stable").reset_index(drop=True)
    events.attrs["sources"] = pd.DataFrame(
        {
            C.SRC: src[first_of_src],
            C.CAMPAIGN: campaign[first_of_src],
            "n_probes": n_probes.astype(np.int64),
            "n_ports": n_ports.astype(np.int64),
        }
    )
    return events


def _ranked_pairs(index: NeighborIndex) -> dict[int, list[tuple[float, int]]]:
    """Each port's neighbours as ``(distance, port)`` pairs sorted by that pair, the order the
    policy ranks candidates in (a metric's own tie-break may differ); cached on the index."""
    cached = index.__dict__.get("_ranked")
    if cached is None:
        cached = {}
        for port, (nbr, dist) in index.lists.items():
            cached[port] = sorted(zip(dist.tolist(), nbr.tolist(), strict=True))
        object.__setattr__(index, "_ranked", cached)
    return cached


def replay_blocking(
    events: pd.DataFrame,
    /,
    *,
    index: NeighborIndex,
    k: int,
    progress: ProgressFn | None = None,
    progress_every: int = 20_000,
) -> pd.DataFrame:
    """Replay ``events`` (from :func:`replay_events`) under the k-nearest blocking policy.

    Each source keeps, for every candidate port, its smallest distance to the ports probed so far,
    and a heap of ``(distance, port)`` candidates with lazy deletion (entries for ports since
    probed or since reached by a shorter distance are dropped when they surface), so a new probe
    costs ``O((L + k) log H)`` instead of a scan of every candidate: the ``k`` blocked ports are
    the ``k`` smallest valid heap entries. Only the first ``k + n_ports`` pairs of a port's list can
    ever rank among the ``k`` nearest unprobed ports of a source that probes ``n_ports`` ports (at
    least ``k`` unprobed ones come before the rest), so ``L`` is that, not the whole list.

    Returns
    -------
    pandas.DataFrame
        The per-source frame of ``events.attrs["sources"]`` plus ``later_ports int64`` (distinct
        ports after the first), ``later_ports_blocked int64``, ``later_probes int64``,
        ``later_probes_blocked int64``, ``predicted int64`` (distinct ports ever predicted) and
        ``predicted_unprobed int64`` (of those, never probed by the source: false positives).
    """
    sources = events.attrs["sources"].copy()
    n_src = len(sources)
    campaign = sources[C.CAMPAIGN].to_numpy()
    depth = (k + sources["n_ports"].to_numpy().astype(np.int64)).tolist()
    ranked = _ranked_pairs(index)
    inf = float("inf")
    seen: list[set[int] | None] = [None] * n_src
    dmin: list[dict[int, float] | None] = [None] * n_src
    heaps: list[list[tuple[float, int]] | None] = [None] * n_src
    left = sources["n_ports"].to_numpy().astype(np.int64).tolist()  # events still to come
    blocked: list[set[int]] = [set() for _ in range(n_src)]
    predicted: list[set[int]] = [set() for _ in range(n_src)]
    tp = np.zeros(n_src, dtype=np.int64)
    totals: dict[int, list[float]] = {}
    src_ids = events["source"].to_numpy().tolist()
    ports = events[C.DPORT].to_numpy().astype(np.int64).tolist()
    n_events = len(src_ids)
    push, pop = heapq.heappush, heapq.heappop
    for i in range(n_events):
        s, p = src_ids[i], ports[i]
        known = seen[s]
        if known is None:
            known, near, heap = set(), {}, []
            seen[s], dmin[s], heaps[s] = known, near, heap
        else:
            near, heap = dmin[s], heaps[s]  # type: ignore[assignment]
            hit = p in blocked[s]
            tp[s] += hit
            row = totals.setdefault(int(campaign[s]), [0.0, 0.0])
            row[0] += 1
            row[1] += hit
        known.add(p)
        got = ranked.get(p)
        if got is not None:
            for d, q in itertools.islice(got, depth[s]):
                if d < near.get(q, inf):
                    near[q] = d
                    push(heap, (d, q))
        best: list[tuple[float, int]] = []
        while heap and len(best) < k:
            d, q = pop(heap)
            if q not in known and near[q] == d:
                best.append((d, q))
        for item in best:
            push(heap, item)
        chosen = {q for _, q in best}
        blocked[s] = chosen
        predicted[s].update(chosen)
        left[s] -= 1
        if left[s] == 0:  # the source's last new port: its candidates are no longer needed
            dmin[s] = heaps[s] = None
        if progress is not None and (i + 1) % progress_every == 0:
            progress(i + 1, n_events, totals)
    if progress is not None:
        progress(n_events, n_events, totals)
    n_probes = sources["n_probes"].to_numpy()
    n_ports = sources["n_ports"].to_numpy()
    sources["later_ports"] = np.maximum(n_ports - 1, 0)
    sources["later_ports_blocked"] = tp
    sources["later_probes"] = np.maximum(n_probes - 1, 0)
    # Repeats of an already probed port are blocked (the source is blocked on what it probed).
    sources["later_probes_blocked"] = (n_probes - n_ports) + tp
    sources["predicted"] = np.asarray([len(x) for x in predicted], dtype=np.int64)
    sources["predicted_unprobed"] = np.asarray(
        [len(pred - (known or set())) for pred, known in zip(predicted, seen, strict=True)], dtype=np.int64
    )
    return sources


def summarize_replay(per_source: pd.DataFrame, /, *, by: str = C.CAMPAIGN) -> pd.DataFrame:
    """Per-group means of the per-source shares (sources with at least one later port).

    Returns
    -------
    pandas.DataFrame
        ``<by>, sources int64, new_ports_blocked float64, later_probes_blocked float64,
        fp_ports_per_source float64, fp_share float64`` (shares in 0..1, means over sources).
    """
    frame = per_source[per_source["later_ports"] > 0].copy()
    frame["_new"] = frame["later_ports_blocked"] / frame["later_ports"]
    frame["_probes"] = frame["later_probes_blocked"] / frame["later_probes"]
    frame["_fp_share"] = np.where(
        frame["predicted"] > 0, frame["predicted_unprobed"] / frame["predicted"].clip(lower=1), 0.0
    )
    out = frame.groupby(by, sort=True).agg(
        sources=("_new", "size"),
        new_ports_blocked=("_new", "mean"),
        later_probes_blocked=("_probes", "mean"),
        fp_ports_per_source=("predicted_unprobed", "mean"),
        fp_share=("_fp_share", "mean"),
    )
    return out.reset_index()

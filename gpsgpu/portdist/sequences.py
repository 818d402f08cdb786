"""Per-source port sequences, scan classification and daily transition counts.

A *sequence* is what one source probes during one UTC day, in time order. Cutting sequences at
midnight is what makes the counts additive: a day's counts depend only on that day's probes, so a
window (week, month, year) is the sum of its days' counts and a new day never recomputes the year.

Classification of a sequence (thresholds are parameters, defaults in
:class:`gpsgpu.config.PortdistBuildConfig`), checked in this order:

1. **vertical**: the source probed at least ``vertical_min_ports`` distinct ports that day (a port
   sweep: its transitions are port-number order, not meaning);
2. **horizontal**: at most ``horizontal_max_ports`` distinct ports on at least
   ``horizontal_min_dsts`` distinct darknet addresses (one port across the space);
3. **single_port**: one distinct port (no transition to count);
4. **tailored**: everything else; only these sequences are counted.

All functions read the array namespace from the frame they get (pandas/NumPy or cuDF/CuPy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpsgpu.backend import backend_of, values_of
from gpsgpu.portdist import columns as C

#: Defaults of the classification thresholds (documented in the README and the build config).
DEFAULT_VERTICAL_MIN_PORTS = 100
DEFAULT_HORIZONTAL_MAX_PORTS = 1
DEFAULT_HORIZONTAL_MIN_DSTS = 256


def _frame(xdf: Any, columns: dict[str, Any]) -> Any:
    return xdf.DataFrame(columns)


def sort_probes(probes: Any, /) -> Any:
    """Sort probes into per-source sequences and add each probe's UTC day.

    Parameters
    ----------
    probes : frame
        ``ts int64, src uint32, dst uint32, dport uint16`` (other columns are carried along).

    Returns
    -------
    frame
        The same rows plus ``day int32`` (days since 1970-01-01), sorted by ``src, ts, dport, dst``.
        Ties in time are broken by port then address so the result does not depend on the order of
        the input rows (nor on the backend).
    """
    b = backend_of(probes)
    xp = b.xp
    ts = values_of(probes[C.TS])
    keys = [values_of(probes[C.DST]), values_of(probes[C.DPORT]), ts, values_of(probes[C.SRC])]
    if b.xp.__name__ == "cupy":
        # cupy.lexsort takes one 2-D array, so the keys share a dtype (int64 holds them all).
        order = xp.lexsort(xp.stack([k.astype(xp.int64) for k in keys]))
        out = probes.take(order).reset_index(drop=True)
        out[C.DAY] = (values_of(out[C.TS]) // C.DAY_US).astype(xp.int32)
        return out
    order = _probe_order(*keys)
    # Column by column: a frame-level take of 4+ columns of tens of millions of rows is slower.
    columns = {name: values_of(probes[name])[order] for name in probes.columns}
    columns[C.DAY] = (columns[C.TS] // C.DAY_US).astype(np.int32)
    return b.xdf.DataFrame(columns)


def _probe_order(dst: np.ndarray, dport: np.ndarray, ts: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``np.lexsort((dst, dport, ts, src))``, in two stable passes instead of four.

    Captures arrive in time order, so a stable sort on ``(ts, dport)`` packed into one uint64 is
    nearly free, and one stable pass on ``src`` follows; the rare rows that tie on
    ``(src, ts, dport)`` are then ordered by ``dst``. Same result as the lexsort, 3-4x faster.
    """
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    rel = ts - ts.min()
    if int(rel.max()) >= 1 << 47:  # more than 4.4 years of microseconds: no room for the port
        return np.lexsort((dst, dport, ts, src))
    key = (rel.astype(np.uint64) << np.uint64(16)) | dport.astype(np.uint64)
    order = np.argsort(key, kind="stable")
    order = order[np.argsort(src[order], kind="stable")]
    s_src, s_key = src[order], key[order]
    tie = (s_src[1:] == s_src[:-1]) & (s_key[1:] == s_key[:-1])
    if tie.any():
        rows = np.flatnonzero(np.concatenate([tie, [False]]) | np.concatenate([[False], tie]))
        group = np.cumsum(np.concatenate([[True], ~tie]))[rows]
        order[rows] = order[rows][np.lexsort((dst[order[rows]], group))]
    return order


def _group_ids(xp: Any, src: Any, day: Any) -> Any:
    """Dense id of every probe's (source, day) sequence, for probes sorted by :func:`sort_probes`."""
    if src.size == 0:
        return xp.zeros(0, dtype=xp.int64)
    starts = xp.empty(src.size, dtype=xp.int64)
    starts[0] = 0
    starts[1:] = (src[1:] != src[:-1]) | (day[1:] != day[:-1])
    return xp.cumsum(starts)


def _unique(xp: Any, key: Any) -> Any:
    """Sorted distinct values by sort-and-compare: NumPy 2's hash-based ``unique`` is several
    times slower on these keys, which arrive nearly sorted (probes are ordered by sequence)."""
    if key.size == 0:
        return key
    key = xp.sort(key)
    keep = xp.ones(key.size, dtype=bool)
    keep[1:] = key[1:] != key[:-1]
    return key[keep]


def _distinct_per_group(xp: Any, gid: Any, values: Any, n_groups: int, bits: int) -> Any:
    """Number of distinct ``values`` (``bits`` wide) per group id."""
    if gid.size == 0:
        return xp.zeros(n_groups, dtype=xp.int64)
    key = (gid.astype(xp.uint64) << xp.uint64(bits)) | values.astype(xp.uint64)
    pairs = _unique(xp, key)
    return xp.bincount((pairs >> xp.uint64(bits)).astype(xp.int64), minlength=n_groups)


def classify_sequences(
    probes: Any,
    /,
    *,
    vertical_min_ports: int = DEFAULT_VERTICAL_MIN_PORTS,
    horizontal_max_ports: int = DEFAULT_HORIZONTAL_MAX_PORTS,
    horizontal_min_dsts: int = DEFAULT_HORIZONTAL_MIN_DSTS,
) -> Any:
    """One row per (source, day) sequence with its size and scan class.

    Parameters
    ----------
    probes : frame
        Output of :func:`sort_probes` (``day int32, src uint32, dst uint32, dport uint16`` sorted).

    Returns
    -------
    frame
        ``day int32, src uint32, n_probes int64, n_ports int64, n_dsts int64, scan uint8`` (a class
        of :data:`gpsgpu.portdist.columns.SCAN_NAMES`), row ``i`` being the ``i``-th sequence in
        the probes' order. ``n_dsts`` is counted only where it decides (at most
        ``horizontal_max_ports`` ports) and is 0 elsewhere.
    """
    b = backend_of(probes)
    xp = b.xp
    src, day = values_of(probes[C.SRC]), values_of(probes[C.DAY])
    port, dst = values_of(probes[C.DPORT]), values_of(probes[C.DST])
    gid = _group_ids(xp, src, day)
    n_groups = int(gid[-1]) + 1 if gid.size else 0
    n_probes = xp.bincount(gid, minlength=n_groups).astype(xp.int64)
    n_ports = _distinct_per_group(xp, gid, port, n_groups, 16)
    # Distinct destinations only matter for sequences narrow enough to be horizontal scans.
    narrow = (n_ports <= horizontal_max_ports)[gid]
    n_dsts = _distinct_per_group(xp, gid[narrow], dst[narrow], n_groups, 32)
    scan = xp.full(n_groups, C.TAILORED, dtype=xp.uint8)
    scan[n_ports == 1] = C.SHORT
    scan[(n_ports <= horizontal_max_ports) & (n_dsts >= horizontal_min_dsts)] = C.HORIZONTAL
    scan[n_ports >= vertical_min_ports] = C.VERTICAL
    first = xp.zeros(n_groups, dtype=xp.int64)
    if n_groups:
        first[1:] = xp.cumsum(n_probes)[:-1]
    return _frame(
        b.xdf,
        {
            C.DAY: day[first].astype(xp.int32),
            C.SRC: src[first],
            "n_probes": n_probes,
            "n_ports": n_ports,
            "n_dsts": n_dsts,
            C.SCAN: scan,
        },
    )


def _sum_by_key(xp: Any, key: Any, values: Any | None = None) -> tuple[Any, Any]:
    """Distinct keys (sorted) and the sum of ``values`` (int64; 1 each when None) per key."""
    if key.size == 0:
        return key, xp.zeros(0, dtype=xp.int64)
    if values is None:
        key = xp.sort(key)
        csum = xp.arange(1, key.size + 1, dtype=xp.int64)
    else:
        order = xp.argsort(key)
        key = key[order]
        csum = xp.cumsum(values[order].astype(xp.int64))
    last = xp.flatnonzero(xp.concatenate([key[1:] != key[:-1], xp.ones(1, dtype=bool)]))
    sums = csum[last]
    sums[1:] = sums[1:] - csum[last[:-1]]
    return key[last], sums


def count_transitions(probes: Any, sequences: Any, /) -> Any:
    """Daily transition counts of the tailored sequences.

    Parameters
    ----------
    probes : frame
        Output of :func:`sort_probes`.
    sequences : frame
        Output of :func:`classify_sequences` on the same probes (its ``scan`` column decides).

    Returns
    -------
    frame
        ``day int32, a uint16, b uint16, n int64, sources int64``, sorted by ``day, a, b``: how
        many times a tailored sequence moved from port ``a`` to a different port ``b`` that day,
        and how many distinct sources did. Repeats of a port (the same port on the next host) are
        not transitions.
    """
    b = backend_of(probes)
    xp = b.xp
    src, day, port = values_of(probes[C.SRC]), values_of(probes[C.DAY]), values_of(probes[C.DPORT])
    gid = _group_ids(xp, src, day)
    scan = values_of(sequences[C.SCAN])
    if gid.size < 2:
        keep = xp.zeros(0, dtype=bool)
    else:
        keep = (gid[1:] == gid[:-1]) & (port[1:] != port[:-1]) & (scan[gid[:-1]] == C.TAILORED)
    a, bb, d = port[:-1][keep], port[1:][keep], day[:-1][keep]
    pair = (a.astype(xp.uint64) << xp.uint64(16)) | bb.astype(xp.uint64)
    key, n = _sum_by_key(xp, (d.astype(xp.uint64) << xp.uint64(32)) | pair)
    # Distinct sources per (day, a, b): the (sequence, pair) combinations, counted per (day, pair).
    by_seq = _unique(xp, (gid[:-1][keep].astype(xp.uint64) << xp.uint64(32)) | pair)
    seq_day = (
        day[xp.flatnonzero(xp.concatenate([xp.ones(1, dtype=bool), gid[1:] != gid[:-1]]))]
        if gid.size
        else day
    )
    seq_key = (seq_day[(by_seq >> xp.uint64(32)).astype(xp.int64)].astype(xp.uint64) << xp.uint64(32)) | (
        by_seq & xp.uint64(0xFFFFFFFF)
    )
    _, n_sources = _sum_by_key(xp, seq_key)
    return _frame(
        b.xdf,
        {
            C.DAY: (key >> xp.uint64(32)).astype(xp.int32),
            C.A: ((key >> xp.uint64(16)) & xp.uint64(0xFFFF)).astype(xp.uint16),
            C.B: (key & xp.uint64(0xFFFF)).astype(xp.uint16),
            C.N: n.astype(xp.int64),
            C.SOURCES: n_sources.astype(xp.int64),
        },
    )


def sequence_tokens(probes: Any, sequences: Any, /) -> tuple[Any, Any]:
    """The tailored sequences as token arrays, repeats collapsed (what Word2Vec is trained on).

    Returns
    -------
    (ports, starts)
        ``ports uint16``: the ports of every tailored sequence with consecutive repeats removed,
        sequences one after another; ``starts int64``: where each sequence begins (plus the end).
    """
    b = backend_of(probes)
    xp = b.xp
    src, day, port = values_of(probes[C.SRC]), values_of(probes[C.DAY]), values_of(probes[C.DPORT])
    gid = _group_ids(xp, src, day)
    scan = values_of(sequences[C.SCAN])
    tailored = scan[gid] == C.TAILORED if gid.size else xp.zeros(0, dtype=bool)
    new = xp.ones(gid.size, dtype=bool)
    if gid.size > 1:
        new[1:] = (gid[1:] != gid[:-1]) | (port[1:] != port[:-1])
    keep = tailored & new
    tokens, owners = port[keep], gid[keep]
    first = xp.ones(owners.size, dtype=bool)
    if owners.size > 1:
        first[1:] = owners[1:] != owners[:-1]
    starts = xp.concatenate([xp.flatnonzero(first), xp.asarray([owners.size])]).astype(xp.int64)
    return tokens, starts

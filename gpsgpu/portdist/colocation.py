"""Co-location distances: the port graph of a GPS seed scan instead of a darknet.

GPS (``GPS_REFERENCE.md``) counts, over the hosts of a seed scan, how often port ``b`` is open on
a host that has port ``a`` open: with its ``L4`` feature (the bare port) that is
``count_p2(a, L4, b)`` out of ``cp_server(a, L4)`` hosts, so ``P(b | a) = count_p2 / cp_server``.
Ports that live on the same hosts (context semantics: a web port and 3306) get a high probability.
The edge weight is the symmetric mean ``(P(a | b) + P(b | a)) / 2`` in ``(0, 1]``; from there the
darknet's machinery applies unchanged (rescale, invert, all-pairs, top-k), and the result is stored
as a second source beside the darknet one.
"""

from __future__ import annotations

from typing import Any

from gpsgpu.backend import backend_of, values_of
from gpsgpu.portdist import columns as C

#: GPS's L4 feature string: the feature every service has, "this port is open".
L4_FEATURE = "L4"


def colocation_counts(services: Any, /) -> tuple[Any, Any]:
    """Host co-occurrence counts of a services table.

    Parameters
    ----------
    services : frame
        ``ip uint32, port uint16`` (one row per open port of a host).

    Returns
    -------
    (pairs, hosts)
        ``pairs``: ``a uint16, b uint16, n int64`` (hosts with both ``a`` and ``b`` open, ``a != b``,
        both orders); ``hosts``: ``port uint16, n int64`` (hosts with ``port`` open).
    """
    b = backend_of(services)
    s = services[["ip", "port"]].drop_duplicates()
    pairs = s.merge(s, on="ip", suffixes=("_a", "_b"))
    pairs = pairs[pairs["port_a"] != pairs["port_b"]]
    counted = pairs.groupby(["port_a", "port_b"], sort=True).size().reset_index()
    counted.columns = [C.A, C.B, C.N]
    hosts = s.groupby("port", sort=True).size().reset_index()
    hosts.columns = [C.PORT, C.N]
    xp = b.xp
    counted = counted.astype({C.A: xp.uint16, C.B: xp.uint16, C.N: xp.int64})
    hosts = hosts.astype({C.PORT: xp.uint16, C.N: xp.int64})
    return counted, hosts


def colocation_edges(pairs: Any, hosts: Any, /) -> Any:
    """Undirected co-location edges from pair and host counts.

    Parameters
    ----------
    pairs : frame
        ``a uint16, b uint16, n int64``: hosts with both ports open (one or both orders).
    hosts : frame
        ``port uint16, n int64``: hosts with the port open.

    Returns
    -------
    frame
        ``a uint16, b uint16, weight float64, sources int64`` with ``a < b``: ``weight`` the mean of
        ``P(a | b)`` and ``P(b | a)``, ``sources`` the hosts that have both.
    """
    b = backend_of(pairs)
    xp = b.xp
    a, bb = values_of(pairs[C.A]).astype(xp.int64), values_of(pairs[C.B]).astype(xp.int64)
    n = values_of(pairs[C.N]).astype(xp.float64)
    per_port = xp.zeros(65_536, dtype=xp.float64)
    per_port[values_of(hosts[C.PORT]).astype(xp.int64)] = values_of(hosts[C.N]).astype(xp.float64)
    keep = (a != bb) & (per_port[a] > 0) & (per_port[bb] > 0)
    a, bb, n = a[keep], bb[keep], n[keep]
    lo, hi = xp.minimum(a, bb), xp.maximum(a, bb)
    key = lo * 65_536 + hi
    # One value of n per unordered pair (both orders carry the same host count when present).
    order = xp.argsort(key)
    key, n = key[order], n[order]
    first = xp.concatenate([xp.ones(1, dtype=bool), key[1:] != key[:-1]]) if key.size else key.astype(bool)
    key, n = key[first], n[first]
    lo, hi = key // 65_536, key % 65_536
    weight = 0.5 * (n / per_port[lo] + n / per_port[hi])
    return b.xdf.DataFrame(
        {
            C.A: lo.astype(xp.uint16),
            C.B: hi.astype(xp.uint16),
            C.WEIGHT: weight,
            C.SOURCES: n.astype(xp.int64),
        }
    )

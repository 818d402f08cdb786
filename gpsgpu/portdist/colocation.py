"""Co-location distances: the port graph of a GPS seed scan instead of a darknet.

GPS (``GPS_REFERENCE.md``) counts, over the hosts of a seed scan, how often port ``b`` is open on
a host that has port ``a`` open: with its ``L4`` feature (the bare port) that is
``count_p2(a, L4, b)`` out of ``cp_server(a, L4)`` hosts, so ``P(b | a) = count_p2 / cp_server``.
Ports that live on the same hosts (context semantics: a web port and 3306) get a high probability.

A distance needs the evidence behind it. With raw frequencies a port seen on two hosts that both
run a web server has ``P(80 | port) = 1``, and any mean that lets one direction dominate puts it
nearer to 80 than 443 is, although 80 and 443 share thousands of hosts. So the edge weight is
support-aware:

- each conditional probability is shrunk toward "unrelated" (0) by ``prior_hosts`` pseudo-hosts
  that have the port and not the other one (an additive prior):
  ``P~(b | a) = n / (n_a + prior_hosts)``; a conditional resting on a few hosts stays small, one
  resting on thousands barely moves;
- the two directions are combined by their geometric mean, so a pair is close only when each port
  predicts the other: ``weight = sqrt(P~(a | b) P~(b | a)) = n / sqrt((n_a + m)(n_b + m))``
  (with ``m = 0`` this is the Ochiai coefficient, the cosine between the ports' host sets);
- pairs shared by fewer than ``min_hosts`` hosts are dropped.

From there the darknet's machinery applies unchanged (rescale, invert, all-pairs, top-k), and the
result is stored as a second source beside the darknet one.
"""

from __future__ import annotations

from typing import Any

from gpsgpu.backend import backend_of, values_of
from gpsgpu.portdist import columns as C

#: GPS's L4 feature string: the feature every service has, "this port is open".
L4_FEATURE = "L4"

#: Pseudo-hosts of the additive prior. On the default simulated Internet's 1% seed (10,046 hosts)
#: 10 puts 443, 22 and 21 first among 80's neighbours, with ports seen on 2 to 4 hosts from
#: distance 20 on (they were all 80's nearest at 10.7 with the raw mean of conditionals); 0 keeps
#: ports seen on 2 hosts within 80's five nearest.
DEFAULT_PRIOR_HOSTS = 10.0
#: The darknet's ``--min-sources`` default: one pair of ports on a single host is an accident.
DEFAULT_MIN_HOSTS = 2


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


def colocation_edges(
    pairs: Any,
    hosts: Any,
    /,
    *,
    min_hosts: int = DEFAULT_MIN_HOSTS,
    prior_hosts: float = DEFAULT_PRIOR_HOSTS,
) -> Any:
    """Undirected, support-aware co-location edges from pair and host counts.

    Parameters
    ----------
    pairs : frame
        ``a uint16, b uint16, n int64``: hosts with both ports open (one or both orders).
    hosts : frame
        ``port uint16, n int64``: hosts with the port open.
    min_hosts : int
        Drop pairs shared by fewer hosts.
    prior_hosts : float
        Pseudo-hosts of the additive prior that shrinks each conditional probability toward 0
        (see the module doc); 0 gives the Ochiai coefficient ``n / sqrt(n_a n_b)``.

    Returns
    -------
    frame
        Same kind as ``pairs``: ``a uint16, b uint16, weight float64, sources int64`` with
        ``a < b``, sorted; ``weight = n / sqrt((n_a + prior_hosts)(n_b + prior_hosts))`` in
        ``(0, 1]``, ``sources`` the hosts that have both.
    """
    if min_hosts < 1:
        raise ValueError(f"min_hosts must be at least 1, not {min_hosts}")
    if not prior_hosts >= 0:
        raise ValueError(f"prior_hosts must be >= 0, not {prior_hosts}")
    b = backend_of(pairs)
    xp = b.xp
    a, bb = values_of(pairs[C.A]).astype(xp.int64), values_of(pairs[C.B]).astype(xp.int64)
    n = values_of(pairs[C.N]).astype(xp.float64)
    per_port = xp.zeros(65_536, dtype=xp.float64)
    per_port[values_of(hosts[C.PORT]).astype(xp.int64)] = values_of(hosts[C.N]).astype(xp.float64)
    keep = (a != bb) & (per_port[a] > 0) & (per_port[bb] > 0) & (n >= min_hosts)
    a, bb, n = a[keep], bb[keep], n[keep]
    lo, hi = xp.minimum(a, bb), xp.maximum(a, bb)
    key = lo * 65_536 + hi
    # One value of n per unordered pair (both orders carry the same host count when present).
    order = xp.argsort(key)
    key, n = key[order], n[order]
    first = xp.concatenate([xp.ones(1, dtype=bool), key[1:] != key[:-1]]) if key.size else key.astype(bool)
    key, n = key[first], n[first]
    lo, hi = key // 65_536, key % 65_536
    weight = n / xp.sqrt((per_port[lo] + prior_hosts) * (per_port[hi] + prior_hosts))
    return b.xdf.DataFrame(
        {
            C.A: lo.astype(xp.uint16),
            C.B: hi.astype(xp.uint16),
            C.WEIGHT: weight,
            C.SOURCES: n.astype(xp.int64),
        }
    )

"""Statistics of a simulated Internet, set beside the facts the GPS talk quotes about the real one."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpsgpu.backend import to_numpy
from gpsgpu.sim import catalog as cat
from gpsgpu.sim.internet import ServiceArrays

#: Hosts answering on more ports than this are pseudo-service hosts (GPS's definition).
PSEUDO_PORTS = 10

#: 5,000 of 65,536 ports: the talk's "top 5K ports" as a share of the port space.
TOP_SHARE = 5000 / 65536

#: What the GPS talk (seeds/000_eada4d3f1a25bda9.txt) says about the real IPv4 Internet.
TALK: dict[str, tuple[float | None, str]] = {
    "http_not_on_80": (0.97, "97% of HTTP services do not occupy port 80"),
    "missed_by_top_5k_ports": (
        0.63,
        "scanning the top 5K ports misses an estimated 1.9 billion (63%) of all services",
    ),
    "missed_by_top_7_6pct_ports": (
        0.63,
        "the same cut scaled to the ports in use: services missed by the top 7.6% of ports",
    ),
    "on_top_10_ports": (0.05, "5% of services across all 65K ports live on only 10 ports"),
    "p_80_given_443": (0.80, "~80% of HTTP/443 also respond on HTTP/80"),
    "p_143_given_465": (0.50, "~50% of SMTP/465 servers also respond on IMAP/143"),
    "ports_with_partner_25": (
        1.0,
        "for every port, at least 25% of hosts responding on port A also respond on the same port B",
    ),
    "off_assigned_port": (None, "the majority of services do not run on their assigned ports"),
}


def _cooccurrence(ip: np.ndarray, port: np.ndarray) -> tuple[dict[int, float], np.ndarray, np.ndarray]:
    """P(B | A) for every port A: the best partner share, and the (A, B) -> share lookup arrays."""
    first = np.flatnonzero(np.r_[True, ip[1:] != ip[:-1]])
    counts = np.diff(np.r_[first, ip.size])
    host_of = np.repeat(np.arange(first.size), counts)
    # All ordered pairs of a host's ports (hosts of 2..PSEUDO_PORTS ports; k(k-1) <= 90 each).
    multi = np.flatnonzero((counts >= 2) & (counts <= PSEUDO_PORTS))
    a_list, b_list = [], []
    for k in range(2, PSEUDO_PORTS + 1):
        hosts = multi[counts[multi] == k]
        if hosts.size == 0:
            continue
        block = port[first[hosts][:, None] + np.arange(k)[None, :]].astype(np.int64)  # hosts x k
        a = np.repeat(block, k, axis=1)
        b = np.tile(block, (1, k))
        off = a != b
        a_list.append(a[off])
        b_list.append(b[off])
    del host_of
    if not a_list:
        return {}, np.zeros(0, np.int64), np.zeros(0)
    pairs = (np.concatenate(a_list) << 16) | np.concatenate(b_list)
    keys, n_pair = np.unique(pairs, return_counts=True)
    # Hosts on A (all hosts of <= PSEUDO_PORTS ports, single-port ones included).
    small = np.repeat(counts <= PSEUDO_PORTS, counts)
    n_on = np.bincount(port[small].astype(np.int64), minlength=65536)
    share = n_pair / n_on[keys >> 16]
    best: dict[int, float] = {}
    order = np.lexsort((-share, keys >> 16))
    a_sorted = (keys >> 16)[order]
    firsts = np.flatnonzero(np.r_[True, a_sorted[1:] != a_sorted[:-1]])
    for i in firsts.tolist():
        best[int(a_sorted[i])] = float(share[order][i])
    return best, keys, share


def sim_statistics(truth: ServiceArrays, *, min_hosts: int = 20) -> dict[str, Any]:
    """The simulation's numbers for each fact of :data:`TALK`, plus sizes.

    Parameters
    ----------
    truth : ServiceArrays
        Ground truth sorted by ``(ip, port)``.
    min_hosts : int
        Ports with fewer hosts are left out of the per-port co-occurrence statistic.
    """
    ip = to_numpy(truth.ip).astype(np.int64)
    port = to_numpy(truth.port).astype(np.int64)
    protocol = to_numpy(truth.protocol).astype(np.int64)
    family = to_numpy(truth.family).astype(np.int64)
    n = ip.size
    first = np.flatnonzero(np.r_[True, ip[1:] != ip[:-1]]) if n else np.zeros(0, np.int64)
    counts = np.diff(np.r_[first, n]) if n else np.zeros(0, np.int64)
    per_service_count = np.repeat(counts, counts)
    real = per_service_count <= PSEUDO_PORTS

    def facts(mask: np.ndarray) -> dict[str, Any]:
        p = port[mask]
        total = int(p.size)
        by_port = np.bincount(p, minlength=65536)
        ranked = np.sort(by_port)[::-1]
        http = protocol[mask] == cat.PROTOCOLS.index("http")
        assigned = np.array([cat.ASSIGNED_PORT.get(name, -1) for name in cat.PROTOCOLS])
        known = assigned[protocol[mask]] >= 0
        return {
            "services": total,
            "ports_used": int((by_port > 0).sum()),
            "http_not_on_80": float((http & (p != 80)).sum() / max(1, http.sum())),
            "missed_by_top_5k_ports": float(ranked[5000:].sum() / max(1, total)),
            # The same cut relative to the ports in use (5,000 of 65,536 is the top 7.6%): the
            # simulation is a scale model whose tail spans fewer ports than the real Internet's.
            "missed_by_top_7_6pct_ports": float(
                ranked[int(np.ceil(TOP_SHARE * int((by_port > 0).sum()))) :].sum() / max(1, total)
            ),
            "on_top_10_ports": float(ranked[:10].sum() / max(1, total)),
            "off_assigned_port": float(
                (known & (assigned[protocol[mask]] != p)).sum() / max(1, int(known.sum()))
            ),
            "top_ports": [
                {"port": int(q), "services": int(by_port[q])}
                for q in np.argsort(-by_port, kind="stable")[:15]
            ],
        }

    best, keys, share = _cooccurrence(ip[real], port[real])
    n_on = np.bincount(port[real], minlength=65536)

    def p_given(b: int, a: int) -> float | None:
        i = np.searchsorted(keys, (a << 16) | b)
        if i < keys.size and keys[i] == ((a << 16) | b):
            return float(share[i])
        return 0.0 if n_on[a] else None

    eligible = [q for q in best if n_on[q] >= min_hosts]
    eligible_all = [int(q) for q in np.flatnonzero(n_on >= min_hosts)]
    partner = [q for q in eligible_all if best.get(q, 0.0) >= 0.25]
    del eligible
    hist = np.bincount(np.minimum(counts, PSEUDO_PORTS + 1), minlength=PSEUDO_PORTS + 2)
    fam_hosts = np.bincount(family[first], minlength=len(cat.FAMILIES)) if n else np.zeros(len(cat.FAMILIES))
    return {
        "hosts": int(first.size),
        "services": int(n),
        "pseudo_hosts": int((counts > PSEUDO_PORTS).sum()),
        "services_on_pseudo_hosts": int((~real).sum()),
        "hosts_by_port_count": {
            (f"{PSEUDO_PORTS + 1}+" if k == PSEUDO_PORTS + 1 else str(k)): int(hist[k])
            for k in range(1, PSEUDO_PORTS + 2)
        },
        "hosts_by_family": {f.name: int(c) for f, c in zip(cat.FAMILIES, fam_hosts.tolist(), strict=True)},
        "real": facts(real),
        "all": facts(np.ones(n, dtype=bool)),
        "p_80_given_443": p_given(80, 443),
        "p_143_given_465": p_given(143, 465),
        "ports_with_partner_25": float(len(partner) / max(1, len(eligible_all))),
        "ports_considered_for_partner": len(eligible_all),
    }


def comparison_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per talk fact: ``fact, talk, simulated`` (real services, pseudo-service hosts excluded)."""
    rows = []
    for key, (talk, text) in TALK.items():
        value = stats[key] if key in stats else stats["real"][key]
        rows.append({"fact": text, "key": key, "talk": talk, "simulated": value})
    return rows


def statistics_markdown(stats: dict[str, Any], describe: dict[str, Any]) -> str:
    """The statistics report as Markdown."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [
        "# Simulated Internet: statistics beside the real one",
        "",
        f"{describe['addresses']:,} addresses in {describe['prefixes_16']} /16s and {describe['ases']} ASes "
        f"({', '.join(f'{k} {v}' for k, v in describe['ases_by_type'].items())}); "
        f"{stats['hosts']:,} responsive hosts with {stats['services']:,} services "
        f"({stats['pseudo_hosts']:,} pseudo-service hosts answering on more than {PSEUDO_PORTS} ports hold "
        f"{stats['services_on_pseudo_hosts']:,} of them).",
        "",
        "Facts are computed over real services (pseudo-service hosts left out, as GPS does).",
        "",
        "| fact (GPS talk) | real Internet | simulated |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['fact']} | {pct(r['talk'])} | {pct(r['simulated'])} |" for r in comparison_rows(stats)]
    lines += ["", "| ports per host | hosts |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in stats["hosts_by_port_count"].items()]
    lines += ["", "| top port | services |", "|---:|---:|"]
    lines += [f"| {r['port']} | {r['services']:,} |" for r in stats["real"]["top_ports"]]
    lines += ["", "| device family | hosts |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in stats["hosts_by_family"].items()]
    return "\n".join(lines) + "\n"

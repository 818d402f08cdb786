"""Improved mode, phase 1a: scored rules from the top-k predictors of every seed service.

Compatible mode (:mod:`gpsgpu.learn.patterns`) keeps one best predictor per seed service and gives
a rule no probability. Here:

- **Real hosts.** Hosts with 2..10 ports are learned from, as in GPS, and so are hosts with 11 to
  ``max_host_ports`` ports whose services are real: :func:`real_hosts` calls a host with more than
  10 ports real when at least half of its ports answer with distinct ``(protocol, banner)``
  (pseudo-service hosts, tarpits and middleboxes answer the same bytes everywhere; the simulated
  Internet's pseudo hosts do exactly that). Pseudo hosts add nothing, as in GPS.
- **Top-k.** Every seed service ``(ip, p)`` of a learned host keeps its ``top_k`` best candidates
  ``(p1, f)`` (same ordering as GPS: hitrate desc, smaller ``p1``, smaller feature string), each
  with ``hitrate > Hitrate``; ``top_k=1, min_count=3, max_host_ports=10`` is GPS's best predictor
  exactly. A rule is a distinct ``(neededP=p1, f, p)`` of those.
- **Scores.** A rule's score estimates ``P(service on p | f on p1)`` over *all* hosts of the seed,
  since the priors scan meets every host, not only multi-port ones: ``count_p2`` hits over a
  ``support`` of every real seed service with ``f`` on ``p1`` (single-port hosts included), smoothed
  with a Beta(``prior_hits``, ``prior_misses``) prior (Laplace's rule by default):
  ``score = (count_p2 + a) / (support + a + b)``. Hitrate ordering (GPS's) picks the top-k; the
  score ranks predictions and plan rows.
- **Small seeds.** ``min_count`` (hosts with ``f`` on ``p1`` and a service on ``p``) defaults to 2
  here (GPS needs 3), so a port seen on only two seed hosts still yields rules; the smoothing keeps
  such rules' scores modest.

These are knobs of the one engine (:func:`gpsgpu.learn.learn_patterns`): the same partitioned,
additive counts, on the CPU or the GPU; GPS is ``top_k=1, min_count=3, max_host_ports=10``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.backend import to_numpy
from gpsgpu.distributed import SERIAL, Mapper
from gpsgpu.features import DEFAULT_PRESET
from gpsgpu.learn.seed import real_rows

#: GPS's pseudo-service cut: hosts with more ports need :func:`real_hosts` to be learned from.
GPS_MAX_HOST_PORTS = 10
#: Default upper bound on a real host's ports in improved mode (pairs grow as ports squared).
DEFAULT_MAX_HOST_PORTS = 32
DEFAULT_TOP_K = 4
DEFAULT_MIN_COUNT = 2
#: Beta prior of a rule's probability (Laplace's rule of succession).
DEFAULT_PRIOR = (1.0, 1.0)


@dataclass
class RankedRules:
    """What :func:`learn_ranked_rules` returns (host frames).

    Attributes
    ----------
    rules : pandas.DataFrame
        ``neededP uint16, fkey uint64, p uint16, score float64, count_p2 int64, support int64,
        hitrate float64, server string``, sorted by ``(neededP, fkey, p)``.
    predictors : pandas.DataFrame
        ``ip uint32, p uint16, neededP uint16, fkey uint64, hitrate float64, rank int64``: the top-k
        predictors of every learned seed service (``rank`` 0 is GPS's best predictor).
    counts : dict
    """

    rules: pd.DataFrame
    predictors: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def real_hosts(services: Any, /, *, max_host_ports: int = DEFAULT_MAX_HOST_PORTS) -> np.ndarray:
    """Whether each row's host is a real host (bool per row of ``services``, NumPy).

    A host with at most 10 distinct ports is real. A host with 11 to ``max_host_ports`` ports is
    real when at least half of its ports answer with distinct ``(protocol, banner)`` pairs; hosts
    with more ports are not learned from (:func:`gpsgpu.learn.seed.real_rows`).

    Parameters
    ----------
    services : frame
        ``ip uint32, port uint16, protocol str, banner str``.
    """
    return to_numpy(real_rows(services, max_host_ports=max_host_ports))


def learn_ranked_rules(
    services: Any,
    /,
    *,
    hitrate: float = 0.00001,
    use_asn: bool = True,
    preset: str = DEFAULT_PRESET,
    top_k: int = DEFAULT_TOP_K,
    min_count: int = DEFAULT_MIN_COUNT,
    max_host_ports: int = DEFAULT_MAX_HOST_PORTS,
    prior: tuple[float, float] = DEFAULT_PRIOR,
    denominator: str = "all",
    n_partitions: int = 1,
    workers: int | None = None,
    mapper: Mapper = SERIAL,
) -> RankedRules:
    """Scored rules of a seed: top-k predictors per seed service (module docstring), learned by the
    one engine (:func:`gpsgpu.learn.learn_patterns` with improved mode's knobs), on the backend of
    ``services``, partitioned and under Dask like compatible mode.

    Parameters
    ----------
    services : frame or HostPartitions
        A services frame (pandas or cuDF): ``ip uint32, port uint16, asn uint32, protocol str,
        window int32, banner str`` plus the optional columns ``preset`` reads.
    hitrate : float
        A predictor is kept only when its hitrate exceeds this (GPS's ``Hitrate``).
    top_k : int
        Predictors kept per seed service (1: GPS's single best).
    min_count : int
        Hosts a pair ``(p1, f) -> p`` needs to have a hitrate at all (GPS: 3).
    max_host_ports : int
        Largest real host learned from (10: GPS's host filter).
    prior : (float, float)
        Beta prior ``(a, b)`` of the scores.
    denominator : str
        The score's denominator: ``all`` (every real seed host with ``f`` on ``p1``) or
        ``learned`` (GPS's ``cp_server``: hosts with 2..``max_host_ports`` ports only).
    n_partitions, workers, mapper
        As for :func:`gpsgpu.learn.learn_patterns` (the result does not depend on them).
    """
    if denominator not in ("all", "learned"):
        raise ValueError(f"denominator must be 'all' or 'learned', not {denominator!r}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    from gpsgpu.learn.patterns import learn_patterns

    learned = learn_patterns(
        services,
        hitrate=hitrate,
        use_asn=use_asn,
        preset=preset,
        n_partitions=n_partitions,
        workers=workers,
        mapper=mapper,
        top_k=top_k,
        min_count=min_count,
        max_host_ports=max_host_ports,
        supports=True,
    )
    found = learned.rules
    a, b = prior
    hits = found[schema.COUNT_P2].to_numpy(np.int64)
    n = found[schema.SUPPORT if denominator == "all" else schema.CP_SERVER].to_numpy(np.int64)
    rules = pd.DataFrame(
        {
            schema.NEEDED_P: found[schema.NEEDED_P].to_numpy(np.uint16),
            schema.FKEY: found[schema.FKEY].to_numpy(np.uint64),
            schema.P: found[schema.P].to_numpy(np.uint16),
            schema.SCORE: (hits + a) / (n + a + b),
            schema.COUNT_P2: hits,
            schema.SUPPORT: n,
            schema.HITRATE: found[schema.HITRATE].to_numpy(np.float64),
            schema.SERVER: found[schema.SERVER],
        }
    )
    c = learned.counts
    counts = {
        "n_services": c["n_services"],
        "n_hosts": c["n_hosts"],
        "n_hosts_real": c["n_hosts"] - c["n_hosts_over"],
        "n_hosts_learned": c["n_hosts_counted"],
        "n_hosts_learned_over_10": c["n_hosts_counted_over_10"],
        "n_predictors": len(learned.predictors),
        "n_rules": len(rules),
    }
    return RankedRules(rules=rules, predictors=learned.predictors, counts=counts)


#: Strength (in hosts) of the all-ASes prior of a host rule's score (:func:`learn_host_rules`).
DEFAULT_HOST_PRIOR_HOSTS = 20.0
#: Host rules scoring below this are not kept (each would cost a probe per live host of its AS).
DEFAULT_MIN_HOST_SCORE = 0.0003
#: The ``asn`` of the host rules that stand for every AS (hosts of ASes the seed did not see).
ANY_ASN = 0


def learn_host_rules(
    services: Any,
    /,
    *,
    max_host_ports: int = DEFAULT_MAX_HOST_PORTS,
    prior_hosts: float = DEFAULT_HOST_PRIOR_HOSTS,
    min_score: float = DEFAULT_MIN_HOST_SCORE,
) -> pd.DataFrame:
    """Host rules: ``P(service on p | a live host of AS a)`` from the seed's real hosts.

    A service rule (:func:`learn_ranked_rules`) needs a service on its port ``p1``; a host found live
    on any port also tells which AS it is in, and ASes differ in what they run (a hoster's images,
    an ISP's routers). A host rule ``(a, p)`` scores

    ``(n(a, p) + m * n(p) / N) / (N(a) + m)``

    with ``N(a)`` the real seed hosts of AS ``a``, ``n(a, p)`` those with a service on ``p``,
    ``n(p) / N`` the share over all ASes and ``m = prior_hosts``: an AS seen on few seed hosts
    scores like the whole seed. Rules of ``asn`` :data:`ANY_ASN` (the all-ASes share) stand for ASes
    the seed never saw. Rules under ``min_score`` are dropped.

    Returns
    -------
    pandas.DataFrame
        ``asn uint32, p uint16, score float64, count_p2 int64, support int64`` sorted by
        ``(asn, score desc, p)``.
    """
    frame = services.to_pandas() if hasattr(services, "to_pandas") else services
    real = frame[real_hosts(frame, max_host_ports=max_host_ports)]
    hosts = pd.DataFrame(
        {
            schema.IP: np.asarray(real[schema.IP], np.uint32),
            schema.PORT: np.asarray(real[schema.PORT], np.uint16),
            schema.ASN: np.asarray(real[schema.ASN], np.uint32),
        }
    ).drop_duplicates([schema.IP, schema.PORT])
    # A host's AS: its first service's (an address belongs to one AS).
    asn_of = hosts.drop_duplicates(schema.IP).set_index(schema.IP)[schema.ASN]
    hosts[schema.ASN] = hosts[schema.IP].map(asn_of).to_numpy(np.uint32)
    n_all = int(asn_of.size)
    empty = pd.DataFrame(
        {
            schema.ASN: np.zeros(0, np.uint32),
            schema.P: np.zeros(0, np.uint16),
            schema.SCORE: np.zeros(0, np.float64),
            schema.COUNT_P2: np.zeros(0, np.int64),
            schema.SUPPORT: np.zeros(0, np.int64),
        }
    )
    if n_all == 0:
        return empty
    share = hosts.groupby(schema.PORT).size() / n_all  # n(p) / N
    per_as = asn_of.value_counts()  # N(a)
    counts = hosts.groupby([schema.ASN, schema.PORT]).size()  # n(a, p)
    m = float(prior_hosts)
    # Ports worth a rule in AS a: those of a's hosts, and those whose share alone clears min_score.
    common = share[share * m / (per_as.min() + m) >= min_score].index.to_numpy(np.uint16)
    parts = []
    for asn, n_as in per_as.items():
        if asn == ANY_ASN:  # unknown AS: the all-ASes rules below cover it
            continue
        seen = counts.loc[asn]
        ports = np.union1d(seen.index.to_numpy(np.uint16), common)
        hits = seen.reindex(ports, fill_value=0).to_numpy(np.int64)
        score = (hits + m * share.reindex(ports).to_numpy()) / (n_as + m)
        parts.append((np.full(ports.size, asn, np.uint32), ports, score, hits, np.full(ports.size, n_as)))
    any_ports = share.index.to_numpy(np.uint16)
    any_hits = hosts.groupby(schema.PORT).size().to_numpy(np.int64)
    parts.append(
        (np.full(any_ports.size, ANY_ASN, np.uint32), any_ports, share.to_numpy(), any_hits,
         np.full(any_ports.size, n_all))
    )  # fmt: skip
    asn, port, score, hits, support = (np.concatenate(column) for column in zip(*parts, strict=True))
    keep = score >= min_score
    rules = pd.DataFrame(
        {
            schema.ASN: asn[keep],
            schema.P: port[keep],
            schema.SCORE: score[keep],
            schema.COUNT_P2: hits[keep],
            schema.SUPPORT: support[keep].astype(np.int64),
        }
    )
    order = np.lexsort(
        (rules[schema.P].to_numpy(), -rules[schema.SCORE].to_numpy(), rules[schema.ASN].to_numpy())
    )
    return rules.iloc[order].reset_index(drop=True)

"""Co-location distances (``portdist build --from-model``) need the evidence behind them.

A port seen on two hosts that both run a web server has ``P(80 | port) = 1``; with the raw mean of
the two conditional probabilities it came out nearer to 80 than 443, which shares hundreds of hosts
with 80. These tests build count tables where exactly that happens and check that support decides.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpsgpu.backend import Backend, backend_of, to_backend
from gpsgpu.portdist import apsp, graph
from gpsgpu.portdist import columns as C
from gpsgpu.portdist.colocation import DEFAULT_PRIOR_HOSTS, colocation_counts, colocation_edges

#: Hosts with each port, and hosts with both ports of a pair. 80 and 443 share 300 of their 1,000
#: hosts (each predicts the other 30% of the time); rare ports 50001..50003 live on 2 hosts that
#: all run 80, so P(80 | rare) = 1 and the raw mean of conditionals is 0.501 > 0.3 for 80-443.
HOSTS = {80: 1_000, 443: 1_000, 22: 600, 3306: 150, 50001: 2, 50002: 2, 50003: 2, 61000: 1}
SHARED = {
    (80, 443): 300,
    (80, 22): 200,
    (443, 22): 180,
    (22, 3306): 90,
    (80, 3306): 40,
    (80, 50001): 2,
    (80, 50002): 2,
    (443, 50003): 2,
    (80, 50003): 2,
    (50001, 50002): 2,
    (80, 61000): 1,
}
RARE = (50001, 50002, 50003, 61000)


def count_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``pairs`` (both orders) and ``hosts`` frames as ``read_model_colocation`` returns them."""
    a, b, n = [], [], []
    for (x, y), both in SHARED.items():
        a += [x, y]
        b += [y, x]
        n += [both, both]
    pairs = pd.DataFrame(
        {C.A: np.array(a, np.uint16), C.B: np.array(b, np.uint16), C.N: np.array(n, np.int64)}
    )
    hosts = pd.DataFrame(
        {C.PORT: np.array(list(HOSTS), np.uint16), C.N: np.array(list(HOSTS.values()), np.int64)}
    )
    return pairs, hosts


def host(frame):
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def weights(edges) -> dict[tuple[int, int], float]:
    """Edge weights keyed by both orders of each pair."""
    e = host(edges)
    out = {}
    for x, y, w in zip(e[C.A].astype(int), e[C.B].astype(int), e[C.WEIGHT], strict=True):
        out[(x, y)] = out[(y, x)] = float(w)
    return out


def nearest(edges, port: int, *, rescale: str = "assoc") -> list[int]:
    g = graph.port_graph(graph.rescale_invert(edges, rescale=rescale))
    nb = apsp.nearest_ports(g, k=16)
    return nb[nb[C.PORT] == port].sort_values(C.RANK)[C.NEIGHBOR].astype(int).tolist()


def old_mean_weight(pair: tuple[int, int]) -> float:
    both = SHARED.get(pair, SHARED.get(pair[::-1], 0))
    return 0.5 * (both / HOSTS[pair[0]] + both / HOSTS[pair[1]])


def test_the_table_is_the_failure_case() -> None:
    # Under the raw mean of conditionals the 2-host pair outweighs the 300-host one.
    assert old_mean_weight((80, 50001)) > old_mean_weight((80, 443))


def test_well_supported_pair_outweighs_rare_pairs(backend: Backend) -> None:
    pairs, hosts = count_table()
    w = weights(colocation_edges(to_backend(pairs, backend), to_backend(hosts, backend)))
    for rare in (50001, 50002, 50003):
        assert w[(80, 443)] > 10 * w[(80, rare)]
        assert w[(80, 22)] > w[(80, rare)]


def test_nearest_ports_of_80_are_the_supported_ones(backend: Backend) -> None:
    pairs, hosts = count_table()
    edges = colocation_edges(to_backend(pairs, backend), to_backend(hosts, backend))
    order = nearest(edges, 80)
    assert order[:2] == [443, 22]
    # Every rare port is farther than every port with real support.
    assert max(order.index(p) for p in (443, 22, 3306)) < min(order.index(p) for p in RARE if p in order)


def test_old_weights_put_rare_ports_first() -> None:
    # The same pipeline on the raw mean of conditionals: the bug this module fixes.
    pairs, hosts = count_table()
    edges = host(colocation_edges(pairs, hosts, min_hosts=1))
    edges[C.WEIGHT] = [old_mean_weight((int(x), int(y))) for x, y in zip(edges[C.A], edges[C.B], strict=True)]
    assert nearest(edges, 80)[0] in RARE


def test_weight_formula_and_prior() -> None:
    pairs, hosts = count_table()
    m = 7.0
    w = weights(colocation_edges(pairs, hosts, prior_hosts=m))
    for (x, y), both in SHARED.items():
        if both >= 2:
            assert w[(x, y)] == pytest.approx(both / np.sqrt((HOSTS[x] + m) * (HOSTS[y] + m)))
    # Without a prior the weight is the Ochiai coefficient: two ports on exactly the same hosts
    # weigh 1 whatever their support; the prior is what separates 2 hosts from 2,000.
    ochiai = weights(colocation_edges(pairs, hosts, prior_hosts=0))
    assert ochiai[(50001, 50002)] == pytest.approx(1.0)
    shrunk = weights(colocation_edges(pairs, hosts))
    assert shrunk[(50001, 50002)] == pytest.approx(2 / (2 + DEFAULT_PRIOR_HOSTS))


def test_more_evidence_for_the_same_conditionals_means_closer() -> None:
    # Two ports always together, on 2, 20 or 2,000 hosts: the weight grows with the support.
    got = []
    for k in (2, 20, 2_000):
        pairs = pd.DataFrame(
            {C.A: np.array([1, 2], np.uint16), C.B: np.array([2, 1], np.uint16), C.N: [k, k]}
        )
        hosts = pd.DataFrame({C.PORT: np.array([1, 2], np.uint16), C.N: [k, k]})
        got.append(float(colocation_edges(pairs, hosts)[C.WEIGHT].iloc[0]))
    assert got[0] < got[1] < got[2] <= 1.0


def test_min_hosts_drops_thin_pairs(backend: Backend) -> None:
    pairs, hosts = count_table()
    edges = host(colocation_edges(to_backend(pairs, backend), to_backend(hosts, backend), min_hosts=3))
    assert edges[C.SOURCES].min() >= 3
    kept = set(zip(edges[C.A].astype(int), edges[C.B].astype(int), strict=True))
    assert kept == {(min(p), max(p)) for p, n in SHARED.items() if n >= 3}
    one = host(colocation_edges(pairs, hosts, min_hosts=1))
    assert (80, 61000) in set(zip(one[C.A].astype(int), one[C.B].astype(int), strict=True))
    with pytest.raises(ValueError, match="min_hosts"):
        colocation_edges(pairs, hosts, min_hosts=0)
    with pytest.raises(ValueError, match="prior_hosts"):
        colocation_edges(pairs, hosts, prior_hosts=-1)


def test_same_frame_kind_and_same_values_on_either_backend(backend: Backend) -> None:
    pairs, hosts = count_table()
    got = colocation_edges(to_backend(pairs, backend), to_backend(hosts, backend))
    assert backend_of(got) is backend
    want = colocation_edges(pairs, hosts)
    pd.testing.assert_frame_equal(host(got).reset_index(drop=True), want.reset_index(drop=True))
    assert list(want.columns) == [C.A, C.B, C.WEIGHT, C.SOURCES]
    assert (want[C.A] < want[C.B]).all()


def test_counts_from_services_feed_the_same_weights(backend: Backend) -> None:
    # Host co-occurrence from a services table (the seed.parquet path) gives the same counts.
    rng = np.random.default_rng(1)
    rows = []
    ip = 0
    for (x, y), both in SHARED.items():
        for _ in range(both):
            ip += 1
            rows += [(ip, x), (ip, y)]
    services = pd.DataFrame(rows, columns=["ip", "port"]).astype({"ip": np.uint32, "port": np.uint16})
    services = services.iloc[rng.permutation(len(services))]
    pairs, hosts = colocation_counts(to_backend(services, backend))
    edges = host(colocation_edges(pairs, hosts))
    assert len(edges) and (edges[C.WEIGHT] > 0).all() and (edges[C.WEIGHT] <= 1).all()


def test_build_from_model_ranks_by_support(tmp_path: Path) -> None:
    """``portdist build --from-model`` end to end on a seed where a rare pair used to win."""
    from gpsgpu.config import PortdistBuildConfig
    from gpsgpu.io import portdist as store
    from gpsgpu.pipelines.portdist import run_portdist_build

    model = tmp_path / "model"
    model.mkdir()
    (model / "metadata.json").write_text(json.dumps({"tool": "gpsgpu", "command": "learn"}))
    ips, ports = [], []
    ip = 0
    # 80 and 443 on 100 hosts each, 30 shared; two hosts with 80 and a rare port 50001.
    for ports_of_host, count in (((80, 443), 30), ((80,), 70), ((443,), 70), ((80, 50001), 2)):
        for _ in range(count):
            ip += 1
            ips += [ip] * len(ports_of_host)
            ports += list(ports_of_host)
    pq.write_table(
        pa.table({"ip": pa.array(ips, pa.uint32()), "port": pa.array(ports, pa.uint16())}),
        model / "seed.parquet",
    )
    dist = tmp_path / "dist"
    run_portdist_build([], dist, PortdistBuildConfig(windows=(), from_model=str(model), backend="cpu"))
    stored = store.read_window(dist, C.MODEL, C.SEED_WINDOW)
    of80 = stored.neighbors[stored.neighbors[C.PORT] == 80].sort_values(C.RANK)
    assert int(of80[C.NEIGHBOR].iloc[0]) == 443
    assert stored.info["prior_hosts"] == DEFAULT_PRIOR_HOSTS and stored.info["min_sources"] == 2

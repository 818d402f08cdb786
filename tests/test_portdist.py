"""port2dist stages: sequences, classification, counts, windows, all-pairs, replay, peers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from gpsgpu.backend import Backend, to_backend, to_numpy
from gpsgpu.ops import portdist_cpu
from gpsgpu.portdist import apsp, graph, peers, replay, sequences
from gpsgpu.portdist import columns as C
from gpsgpu.portdist.colocation import colocation_counts, colocation_edges
from gpsgpu.portdist.simulate import VERTICAL_ID, DarknetParams, simulate_day

DAY = C.DAY_US
T0 = 20_000 * DAY  # 2024-10-04, any UTC midnight


def probes(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    ts, src, dst, port = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            C.TS: np.asarray(ts, np.int64),
            C.SRC: np.asarray(src, np.uint32),
            C.DST: np.asarray(dst, np.uint32),
            C.DPORT: np.asarray(port, np.uint16),
        }
    )


def host(frame):
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


# --- sequences ------------------------------------------------------------------------------------


def test_sort_probes_does_not_depend_on_input_order(backend: Backend) -> None:
    frame = simulate_day(DarknetParams(probes_per_day=5_000, days=1, seed=3), 0).drop(columns=C.CAMPAIGN)
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    a = host(sequences.sort_probes(to_backend(frame, backend)))
    b = host(sequences.sort_probes(to_backend(shuffled, backend)))
    pd.testing.assert_frame_equal(a, b)
    assert (np.diff(a[C.SRC].to_numpy().astype(np.int64)) >= 0).all()
    assert a[C.DAY].dtype == np.int32


def test_classify_sequences_thresholds(backend: Backend) -> None:
    rows = []
    rows += [(T0 + i, 1, 100, 1000 + i) for i in range(150)]  # vertical: 150 ports
    rows += [(T0 + i, 2, 100 + i, 443) for i in range(300)]  # horizontal: 1 port, 300 addresses
    rows += [(T0 + i, 3, 100 + i, 23) for i in range(3)]  # single port, few addresses
    rows += [(T0 + i, 4, 100 + i // 3, (80, 443, 8080)[i % 3]) for i in range(9)]  # tailored
    ordered = sequences.sort_probes(to_backend(probes(rows), backend))
    seqs = host(sequences.classify_sequences(ordered, vertical_min_ports=100, horizontal_min_dsts=256))
    got = dict(zip(seqs[C.SRC].astype(int), seqs[C.SCAN].astype(int), strict=True))
    assert got == {1: C.VERTICAL, 2: C.HORIZONTAL, 3: C.SHORT, 4: C.TAILORED}
    assert seqs.set_index(C.SRC).loc[4, "n_ports"] == 3
    # Stricter thresholds move the same sequences into other classes.
    seqs = host(sequences.classify_sequences(ordered, vertical_min_ports=3, horizontal_min_dsts=1000))
    got = dict(zip(seqs[C.SRC].astype(int), seqs[C.SCAN].astype(int), strict=True))
    assert got == {1: C.VERTICAL, 2: C.SHORT, 3: C.SHORT, 4: C.VERTICAL}


def test_count_transitions_by_hand(backend: Backend) -> None:
    rows = [
        (T0 + 1, 7, 1, 80),
        (T0 + 2, 7, 2, 443),
        (T0 + 3, 7, 3, 443),  # a repeat: not a transition
        (T0 + 4, 7, 4, 80),
        (T0 + DAY - 1, 7, 5, 22),  # same day
        (T0 + DAY + 1, 7, 5, 2222),  # next day: no transition across midnight
        (T0 + DAY + 2, 7, 6, 22),
        (T0 + 5, 8, 1, 80),
        (T0 + 6, 8, 1, 443),
        (T0 + 1, 9, 1, 80),  # a single-port source: not counted
    ]
    ordered = sequences.sort_probes(to_backend(probes(rows), backend))
    seqs = sequences.classify_sequences(ordered)
    counts = host(sequences.count_transitions(ordered, seqs))
    got = {
        (int(d) - 20_000, int(a), int(b)): (int(n), int(s))
        for d, a, b, n, s in counts.itertuples(index=False)
    }
    assert got == {
        (0, 80, 443): (2, 2),
        (0, 443, 80): (1, 1),
        (0, 80, 22): (1, 1),
        (1, 2222, 22): (1, 1),
    }


def test_sequence_tokens_collapse_repeats() -> None:
    rows = [(T0 + i, 5, i, p) for i, p in enumerate([80, 80, 443, 80, 80])] + [
        (T0, 6, 1, 23),
        (T0 + 1, 6, 1, 2323),
    ]
    ordered = sequences.sort_probes(probes(rows))
    tokens, starts = sequences.sequence_tokens(ordered, sequences.classify_sequences(ordered))
    assert tokens.tolist() == [80, 443, 80, 23, 2323]
    assert starts.tolist() == [0, 3, 5]


# --- graph and windows ----------------------------------------------------------------------------


def test_window_sums_equal_direct_counts() -> None:
    params = DarknetParams(probes_per_day=20_000, days=3, seed=5)
    frames = [simulate_day(params, d).drop(columns=C.CAMPAIGN) for d in range(3)]

    def daily(frame):
        ordered = sequences.sort_probes(frame)
        return sequences.count_transitions(ordered, sequences.classify_sequences(ordered))

    per_day = pd.concat([daily(f) for f in frames], ignore_index=True)
    direct = daily(pd.concat(frames, ignore_index=True))
    pd.testing.assert_frame_equal(per_day.reset_index(drop=True), direct.reset_index(drop=True))
    pd.testing.assert_frame_equal(graph.sum_counts(per_day), graph.sum_counts(direct))


def test_symmetrize_and_rescale() -> None:
    counts = pd.DataFrame(
        {
            C.A: np.array([80, 443, 22, 1], np.uint16),
            C.B: np.array([443, 80, 2222, 9], np.uint16),
            C.N: np.array([6, 4, 1, 3], np.int64),
            C.SOURCES: np.array([2, 1, 1, 1], np.int64),
        }
    )
    edges = graph.symmetrize(counts, min_sources=2)
    assert edges[[C.A, C.B]].values.tolist() == [[80, 443]]
    assert edges[C.WEIGHT].tolist() == [10.0] and edges[C.SOURCES].tolist() == [3]
    edges = graph.symmetrize(counts)
    for rescale in graph.RESCALES:
        out = graph.rescale_invert(edges, rescale=rescale)
        assert out[C.LENGTH].dtype == np.float32
        assert out[C.LENGTH].min() == pytest.approx(1.0)
        # Heavier edges are never longer.
        heavy = out.sort_values(C.WEIGHT)
        if rescale != "assoc":
            assert (np.diff(heavy[C.LENGTH].to_numpy()) <= 1e-6).all()


# --- all-pairs ------------------------------------------------------------------------------------


def random_graph(n: int, m: int, seed: int) -> graph.PortGraph:
    rng = np.random.default_rng(seed)
    ports = rng.choice(65_536, size=n, replace=False)
    a, b = rng.integers(0, n, size=m), rng.integers(0, n, size=m)
    keep = a != b
    edges = pd.DataFrame({C.A: ports[a[keep]].astype(np.uint16), C.B: ports[b[keep]].astype(np.uint16)})
    edges[[C.A, C.B]] = np.sort(edges[[C.A, C.B]].to_numpy(), axis=1)
    edges = edges.drop_duplicates([C.A, C.B]).reset_index(drop=True)
    edges[C.WEIGHT] = rng.integers(1, 1000, size=len(edges)).astype(np.float64)
    edges[C.SOURCES] = 1
    return graph.port_graph(graph.rescale_invert(edges, rescale="log"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_apsp_twin_scipy_networkx_agree(seed: int) -> None:
    g = random_graph(60, 150, seed)  # sparse enough to leave some ports unreachable
    rows = np.arange(g.n_nodes)
    scipy_d = apsp.distance_rows(g, rows, engine="scipy")
    twin = apsp.distance_rows(g, rows, engine="minplus")
    assert twin.dtype == np.float32
    np.testing.assert_array_equal(np.isinf(twin), np.isinf(scipy_d))
    finite = np.isfinite(scipy_d)
    np.testing.assert_allclose(twin[finite], scipy_d[finite], rtol=2e-6)
    nxg = nx.Graph()
    nxg.add_nodes_from(range(g.n_nodes))
    for u in range(g.n_nodes):
        for e in range(g.indptr[u], g.indptr[u + 1]):
            nxg.add_edge(u, int(g.nbr[e]), weight=float(g.length[e]))
    oracle = np.full_like(scipy_d, np.inf, dtype=np.float64)
    for u, lengths in nx.all_pairs_dijkstra_path_length(nxg):
        for v, d in lengths.items():
            oracle[u, v] = d
    np.testing.assert_array_equal(np.isinf(oracle), np.isinf(scipy_d))
    np.testing.assert_allclose(scipy_d[finite], oracle[finite], rtol=1e-6)


def test_minplus_relax_is_one_min_plus_product() -> None:
    g = random_graph(20, 60, 7)
    rng = np.random.default_rng(0)
    dist = rng.random((3, g.n_nodes)).astype(np.float32) * 5
    dist[0, :5] = np.inf
    out = portdist_cpu.minplus_relax(dist, g.indptr, g.nbr, g.length)
    expected = dist.copy()
    for r in range(3):
        for v in range(g.n_nodes):
            for e in range(g.indptr[v], g.indptr[v + 1]):
                expected[r, v] = min(expected[r, v], np.float32(dist[r, g.nbr[e]] + g.length[e]))
    np.testing.assert_array_equal(out, expected)


def test_nearest_ports_match_dense_distances_and_break_ties_by_port() -> None:
    g = random_graph(80, 400, 3)
    dense = apsp.distance_rows(g, np.arange(g.n_nodes))
    nb = apsp.nearest_ports(g, k=5, block_rows=7)
    for port, rows in nb.groupby(C.PORT):
        i = g.index_of(port)
        order = sorted(
            (float(dense[i, j]), int(g.ports[j]))
            for j in range(g.n_nodes)
            if j != i and np.isfinite(dense[i, j])
        )
        assert [(float(d), int(n)) for d, n in zip(rows[C.DISTANCE], rows[C.NEIGHBOR], strict=True)] == order[
            :5
        ]
    # A star with equal lengths: every leaf ties, so the ports decide.
    star = pd.DataFrame({C.A: np.full(4, 10, np.uint16), C.B: np.array([50, 20, 40, 30], np.uint16)})
    star[C.LENGTH] = np.float32(1.0)
    nb = apsp.nearest_ports(graph.port_graph(star), k=3)
    assert nb[nb[C.PORT] == 10][C.NEIGHBOR].tolist() == [20, 30, 40]
    assert nb[nb[C.PORT] == 50][C.NEIGHBOR].tolist() == [10, 20, 30]


def test_pair_distance_and_on_demand() -> None:
    g = random_graph(40, 120, 11)
    dense = apsp.distance_rows(g, np.arange(g.n_nodes))
    a, b = int(g.ports[0]), int(g.ports[5])
    expected = dense[0, 5]
    got = apsp.pair_distance(g, a, b)
    assert (got is None) == (not np.isfinite(expected))
    if got is not None:
        assert got == pytest.approx(float(expected), rel=1e-6)
    assert apsp.pair_distance(g, a, a) == 0.0
    missing = next(p for p in range(65_536) if g.index_of(p) < 0)
    assert apsp.pair_distance(g, a, missing) is None
    stored = apsp.nearest_ports(g, k=4)
    demand = apsp.neighbors_on_demand(g, a, 4)
    pd.testing.assert_frame_equal(stored[stored[C.PORT] == a].reset_index(drop=True), demand)


def test_export_blocks_cover_every_pair_once() -> None:
    g = random_graph(30, 90, 4)
    dense = apsp.distance_rows(g, np.arange(g.n_nodes))
    rows = pd.concat(apsp.iter_pair_distances(g, block_rows=4), ignore_index=True)
    iu = np.triu_indices(g.n_nodes, 1)
    assert len(rows) == int(np.isfinite(dense[iu]).sum())
    assert (rows[C.A] < rows[C.B]).all()


@pytest.mark.gpu
def test_gpu_kernel_matches_twin_bit_for_bit() -> None:
    from gpsgpu.ops import portdist_gpu

    for seed in range(3):
        g = random_graph(300, 1500, seed)
        rows = np.arange(g.n_nodes)
        twin = portdist_cpu.sssp_minplus(g.indptr, g.nbr, g.length, rows, g.n_nodes)
        gpu = portdist_gpu.sssp_minplus(g.indptr, g.nbr, g.length, rows, g.n_nodes).get()
        np.testing.assert_array_equal(gpu, twin)


def test_cpu_and_gpu_distances_agree(backend: Backend) -> None:
    # The whole build on `backend` against the CPU reference (SciPy, float64): float32 rounding.
    frame = simulate_day(DarknetParams(probes_per_day=30_000, days=1, seed=9), 0).drop(columns=C.CAMPAIGN)

    def build(b: Backend, engine: str) -> pd.DataFrame:
        ordered = sequences.sort_probes(to_backend(frame, b))
        counts = sequences.count_transitions(ordered, sequences.classify_sequences(ordered))
        edges = graph.rescale_invert(graph.symmetrize(graph.sum_counts(counts), min_sources=2))
        g = graph.port_graph(edges)
        return pd.DataFrame(to_numpy(apsp.distance_rows(g, np.arange(g.n_nodes), engine=engine)))

    reference = build(Backend.CPU, "scipy").to_numpy()
    got = build(backend, "gpu" if backend is Backend.GPU else "minplus").to_numpy()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(reference))
    finite = np.isfinite(reference)
    np.testing.assert_allclose(got[finite], reference[finite], rtol=4 * np.finfo(np.float32).eps * 8)


def test_kernel_compiles_with_nvcc(tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    source = Path(__file__).resolve().parents[1] / "kernels" / "minplus_sssp.cu"
    done = subprocess.run(
        [nvcc, "-arch=sm_80", "-cubin", "-o", str(tmp_path / "k.cubin"), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_importing_portdist_imports_no_gpu_library() -> None:
    code = (
        "import sys, gpsgpu.portdist.apsp, gpsgpu.portdist.sequences, gpsgpu.pipelines.portdist, "
        "gpsgpu.ops.portdist_gpu; print(any(m in sys.modules for m in ('cupy', 'cudf')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --- replay ---------------------------------------------------------------------------------------


def hand_index() -> replay.NeighborIndex:
    rows = [
        (80, 0, 443, 1.0),
        (80, 1, 8080, 2.0),
        (80, 2, 22, 9.0),
        (443, 0, 80, 1.0),
        (443, 1, 8443, 1.5),
        (443, 2, 8080, 3.0),
        (22, 0, 2222, 1.0),
        (22, 1, 80, 9.0),
    ]
    frame = pd.DataFrame(rows, columns=[C.PORT, C.RANK, C.NEIGHBOR, C.DISTANCE])
    return replay.NeighborIndex.from_frame(frame)


def test_blocking_replay_by_hand() -> None:
    rows = [
        (T0 + 1, 1, 1, 80),  # first probe: block {443, 8080}
        (T0 + 2, 1, 2, 80),  # repeat: blocked (already probed)
        (T0 + 3, 1, 1, 443),  # predicted: TP; now nearest of {80, 443}: 8443 (1.5), 8080 (2.0)
        (T0 + 4, 1, 1, 8080),  # predicted: TP; then {8443, 22}
        (T0 + 5, 1, 1, 3306),  # not predicted
        (T0 + 1, 2, 1, 22),  # source 2: blocks {2222, 80}
        (T0 + 9, 2, 1, 25),  # not predicted; never probes 2222 or 80
    ]
    frame = sequences.sort_probes(probes(rows))
    events = replay.replay_events(frame)
    assert events[C.TS].is_monotonic_increasing
    out = replay.replay_blocking(events, index=hand_index(), k=2).set_index(C.SRC)
    one, two = out.loc[1], out.loc[2]
    assert (one["n_probes"], one["n_ports"], one["later_ports"], one["later_ports_blocked"]) == (5, 4, 3, 2)
    assert (one["later_probes"], one["later_probes_blocked"]) == (4, 3)
    # Predicted over time: {443, 8080}, {8443, 8080}, {8443, 22}, {8443, 22}: 8443 and 22 never probed.
    assert (one["predicted"], one["predicted_unprobed"]) == (4, 2)
    assert (two["later_ports"], two["later_ports_blocked"], two["predicted_unprobed"]) == (1, 0, 2)
    summary = replay.summarize_replay(out.reset_index())
    assert summary["sources"].tolist() == [2]
    assert summary["new_ports_blocked"].iloc[0] == pytest.approx((2 / 3 + 0) / 2)


def test_replay_does_not_depend_on_interleaving() -> None:
    frame = simulate_day(DarknetParams(probes_per_day=5_000, days=1, seed=2), 0)
    frame = sequences.sort_probes(frame[frame[C.CAMPAIGN] < VERTICAL_ID])
    events = replay.replay_events(frame)
    index = peers.numeric_index(np.unique(frame[C.DPORT].to_numpy()), k=8)
    a = replay.replay_blocking(events, index=index, k=3)
    b = replay.replay_blocking(events.sort_values(["source", C.TS]).reset_index(drop=True), index=index, k=3)
    pd.testing.assert_frame_equal(a, b)


def scan_all_candidates(events: pd.DataFrame, index: replay.NeighborIndex, k: int) -> pd.DataFrame:
    """The policy by its definition: every candidate's distance to the probed set, scanned whole
    at each new port (what ``replay_blocking`` did before its heap; quadratic in a source's ports)."""
    import heapq

    sources = events.attrs["sources"].copy()
    seen: dict[int, set[int]] = {}
    near: dict[int, dict[int, float]] = {}
    blocked: dict[int, set[int]] = {}
    predicted: dict[int, set[int]] = {}
    tp = np.zeros(len(sources), dtype=np.int64)
    for s, p in zip(events["source"].tolist(), events[C.DPORT].astype(int).tolist(), strict=True):
        if s in seen:
            tp[s] += p in blocked[s]
        known, dist = seen.setdefault(s, set()), near.setdefault(s, {})
        known.add(p)
        got = index.lists.get(p)
        if got is not None:
            for q, d in zip(got[0].tolist(), got[1].tolist(), strict=True):
                dist[q] = min(d, dist.get(q, np.inf))
        best = heapq.nsmallest(k, ((d, q) for q, d in dist.items() if q not in known))
        blocked[s] = {q for _, q in best}
        predicted.setdefault(s, set()).update(blocked[s])
    sources["later_ports_blocked"] = tp
    sources["predicted"] = [len(predicted.get(s, ())) for s in range(len(sources))]
    sources["predicted_unprobed"] = [
        len(predicted.get(s, set()) - seen.get(s, set())) for s in range(len(sources))
    ]
    return sources


@pytest.mark.parametrize("k", [1, 3, 10])
def test_replay_heap_matches_the_full_scan(k: int) -> None:
    # Many probed ports per source and many equal distances (IANA's 0/1, rounded lengths), where a
    # truncated list or a lazy heap entry would show first.
    frame = simulate_day(DarknetParams(probes_per_day=50_000, days=1, seed=3), 0)
    frame = sequences.sort_probes(frame[frame[C.CAMPAIGN] < VERTICAL_ID])
    events = replay.replay_events(frame)
    vocab = np.unique(frame[C.DPORT].to_numpy())
    rng = np.random.default_rng(0)
    rounded = {
        p: (n, np.round(d / 4) + rng.integers(0, 2, d.size))
        for p, (n, d) in peers.numeric_index(vocab, k=24).lists.items()
    }
    for index in (peers.iana_index(vocab, k=24), replay.NeighborIndex(lists=rounded)):
        got = replay.replay_blocking(events, index=index, k=k)
        want = scan_all_candidates(events, index, k)
        for col in ("later_ports_blocked", "predicted", "predicted_unprobed"):
            np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(), err_msg=col)


# --- peers and co-location ------------------------------------------------------------------------


def test_numeric_and_iana_neighbours() -> None:
    vocab = np.array([21, 22, 23, 80, 1023, 1024, 1025, 49151, 49152, 50000])
    num = peers.numeric_index(vocab, k=3)
    assert num.nearest(22, 3).tolist() == [21, 23, 80]
    assert num.nearest(1023, 2).tolist() == [1024, 1025]
    iana = peers.iana_index(vocab, k=3)
    # Same range first (ties by numeric distance), other ranges after.
    assert iana.nearest(1023, 3).tolist() == [80, 23, 22]
    assert iana.nearest(49152, 2).tolist() == [50000, 49151]
    assert peers.iana_range(np.array([0, 1023, 1024, 49151, 49152, 65535])).tolist() == [0, 0, 1, 1, 2, 2]


def test_neighbor_quality() -> None:
    families = pd.DataFrame(
        {
            "family": ["web", "web", "web", "ssh", "ssh"],
            C.PORT: np.array([80, 443, 8080, 22, 2222], np.uint16),
        }
    )
    q = peers.neighbor_quality(hand_index(), families, k=2).set_index(C.PORT)["quality"]
    assert q[80] == 1.0  # 443, 8080
    assert q[443] == 0.5  # 80, 8443
    assert q[22] == 1.0  # 2222 (family of two: denominator 1)
    assert q[8080] == 0.0  # no neighbours known


def test_word2vec_is_deterministic() -> None:
    tokens = np.array([80, 443, 8080] * 30 + [22, 2222] * 30, dtype=np.uint16)
    starts = np.concatenate([np.arange(0, 90, 3), np.arange(90, 150, 2), [150]])
    a = peers.train_word2vec(tokens, starts, dim=8, epochs=3, min_count=1)
    b = peers.train_word2vec(tokens, starts, dim=8, epochs=3, min_count=1)
    np.testing.assert_array_equal(a.wv["80"], b.wv["80"])
    index = peers.word2vec_index(a, np.array([80, 443, 8080, 22, 2222]), k=2)
    assert set(index.lists) == {80, 443, 8080, 22, 2222}


def test_colocation_edges() -> None:
    services = pd.DataFrame(
        {
            "ip": np.array([1, 1, 2, 2, 3, 3, 3], np.uint32),
            "port": np.array([80, 443, 80, 443, 80, 3306, 443], np.uint16),
        }
    )
    pairs, hosts = colocation_counts(services)
    edges = colocation_edges(pairs, hosts, min_hosts=1, prior_hosts=0).set_index([C.A, C.B])
    # P(443 | 80) = 3/3, P(80 | 443) = 3/3; P(3306 | 80) = 1/3, P(80 | 3306) = 1: geometric mean.
    assert edges.loc[(80, 443), C.WEIGHT] == pytest.approx(1.0)
    assert edges.loc[(80, 3306), C.WEIGHT] == pytest.approx(np.sqrt(1 / 3 * 1))
    assert edges.loc[(80, 443), C.SOURCES] == 3
    # The defaults: 2+ shared hosts, 10 pseudo-hosts shrinking each conditional toward 0.
    shrunk = colocation_edges(pairs, hosts).set_index([C.A, C.B])
    assert list(shrunk.index) == [(80, 443)]
    assert shrunk.loc[(80, 443), C.WEIGHT] == pytest.approx(3 / 13)


def test_probe_order_equals_lexsort_with_ties() -> None:
    rng = np.random.default_rng(0)
    for n in (0, 1, 10, 5_000):
        ts = np.sort(rng.integers(0, 50, n)).astype(np.int64)  # many equal timestamps
        src = rng.integers(0, 20, n).astype(np.uint32)
        port = rng.integers(0, 3, n).astype(np.uint16)
        dst = rng.integers(0, 5, n).astype(np.uint32)
        got = sequences._probe_order(dst, port, ts, src)
        want = np.lexsort((dst, port, ts, src))
        for column in (src, ts, port, dst):
            np.testing.assert_array_equal(column[got], column[want])

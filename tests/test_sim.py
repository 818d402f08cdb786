"""The simulated Internet: determinism, purity per address, CPU = GPU, structure, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from gpsgpu.backend import Backend, to_numpy
from gpsgpu.blocklist import Blocklist
from gpsgpu.errors import UsageError
from gpsgpu.sim import SimInternet, SimParams
from gpsgpu.sim import catalog as cat
from gpsgpu.sim.hashing import cdf_table, hash_keys, pick, threshold
from gpsgpu.sim.internet import ServiceArrays
from gpsgpu.sim.stats import sim_statistics

SMALL = SimParams(hosts=20_000, seed=7)


@pytest.fixture(scope="module")
def internet() -> SimInternet:
    return SimInternet(SMALL)


@pytest.fixture(scope="module")
def truth(internet: SimInternet) -> ServiceArrays:
    return internet.ground_truth()


def _host(arrays: ServiceArrays) -> dict[str, np.ndarray]:
    return {f: np.asarray(to_numpy(getattr(arrays, f))) for f in ("ip", "port", "asn", "protocol", "window",
                                                                   "banner_key", "family")}  # fmt: skip


def test_same_parameters_same_internet(truth: ServiceArrays) -> None:
    again = SimInternet(SMALL).ground_truth()
    a, b = _host(truth), _host(again)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_other_seed_other_internet(truth: ServiceArrays) -> None:
    other = SimInternet(SimParams(hosts=20_000, seed=8)).ground_truth()
    assert not np.array_equal(np.asarray(truth.ip[:100]), np.asarray(other.ip[:100]))


def test_services_are_a_pure_function_of_the_address(internet: SimInternet, truth: ServiceArrays) -> None:
    """Any subset of addresses, in any order and batch, gives exactly the universe's rows for it."""
    hosts = np.unique(truth.ip)
    rng = np.random.default_rng(1)
    subset = rng.choice(hosts, size=300, replace=False)
    shuffled = np.concatenate([subset[::-1], rng.integers(0, 2**32, 500, dtype=np.uint64).astype(np.uint32)])
    got = _host(internet.services_of(shuffled))
    keep = np.isin(truth.ip, subset)
    want = _host(truth.take(np.flatnonzero(keep)))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_rows_are_sorted_and_distinct(truth: ServiceArrays) -> None:
    keys = np.asarray(truth.keys(np))
    assert (np.diff(keys.astype(np.int64)) > 0).all()


def test_no_host_in_blocklisted_space(internet: SimInternet, truth: ServiceArrays) -> None:
    assert not Blocklist.default().contains(truth.ip).any()
    for net in internet.prefixes.tolist():
        assert not Blocklist.default().overlaps(net, 16)


def test_host_count_near_the_request(truth: ServiceArrays) -> None:
    n_hosts = np.unique(truth.ip).size
    assert 0.7 * SMALL.hosts < n_hosts < 1.3 * SMALL.hosts


def test_structure_is_present(internet: SimInternet, truth: ServiceArrays) -> None:
    stats = sim_statistics(truth)
    # Pseudo-service hosts answer on more than 10 ports; most hosts on few.
    assert stats["pseudo_hosts"] > 0
    assert stats["hosts_by_port_count"]["1"] > stats["hosts_by_port_count"]["5"]
    # Many families, several AS types, skewed ports with HTTP mostly off port 80.
    assert sum(v > 0 for v in stats["hosts_by_family"].values()) >= 12
    assert len(set(internet.as_type.tolist())) >= 3
    assert stats["real"]["http_not_on_80"] > 0.5
    assert stats["real"]["top_ports"][0]["services"] > 10 * stats["real"]["top_ports"][-1]["services"] / 10
    # Devices of one model share their TCP window across their services.
    ip, window = np.asarray(truth.ip), np.asarray(truth.window)
    first = np.r_[True, ip[1:] != ip[:-1]]
    host = np.cumsum(first) - 1
    assert (window == window[np.flatnonzero(first)][host]).all()


def test_vendor_confined_to_some_ases(internet: SimInternet, truth: ServiceArrays) -> None:
    """The random-port router family exists only in the ASes where it is present."""
    fam = cat.FAMILY_INDEX["random_port_router"]
    asn = np.asarray(truth.asn)[np.asarray(truth.family) == fam]
    residential = {int(internet.asn[a]) for a in np.flatnonzero(internet.as_type == 0)}
    assert set(np.unique(asn).tolist()) <= residential


def test_banners_render(internet: SimInternet, truth: ServiceArrays) -> None:
    frame = internet.to_frame(truth.take(np.arange(0, len(truth), max(1, len(truth) // 500))))
    assert list(frame.columns[:6]) == ["ip", "port", "asn", "protocol", "window", "banner"]
    assert (frame["banner"].str.len() > 0).all()
    http = frame[frame["protocol"] == "http"]["banner"]
    assert http.str.startswith("HTTP/1.").all()
    tls = frame[frame["protocol"] == "tls"]["banner"]
    assert tls.str.match(r"^16030[0-3][0-9a-f]+$").all()


def test_churn_moves_a_share_of_hosts() -> None:
    day0 = SimInternet(SimParams(hosts=20_000, seed=7, day=0)).ground_truth()
    day30 = SimInternet(SimParams(hosts=20_000, seed=7, day=30)).ground_truth()
    a, b = np.unique(day0.keys(np)), np.unique(day30.keys(np))
    kept = np.isin(a, b).mean()
    assert 0.5 < kept < 0.95


def test_full_ipv4_scale_without_materializing() -> None:
    big = SimInternet(SimParams(hosts=300_000_000, seed=1))
    assert big.n_prefixes > 30_000
    sample = np.arange(1 << 20, dtype=np.int64).astype(np.uint32) + np.uint32(big.prefixes[5000])
    services = big.services_of(sample)
    assert len(services) > 0


@pytest.mark.parametrize(
    "values",
    [
        {"hosts": 0},
        {"hosts": -5},
        {"hosts": 1.5},
        {"day": -1},
        {"hosts": 10**12},
        {"host_lifetime_days": 0.5},
    ],
)
def test_impossible_parameters_are_usage_errors(values: dict) -> None:
    with pytest.raises(UsageError):
        SimParams(**values)


def test_hashing_is_uniform_enough() -> None:
    h = hash_keys(np, 12345, np.arange(200_000))
    draws = (h >> np.uint64(32)).astype(np.int64)
    assert abs((draws < threshold(0.3)).mean() - 0.3) < 0.01
    picked = pick(np, cdf_table([1.0, 0.0, 3.0]), h)
    counts = np.bincount(picked, minlength=3) / picked.size
    assert counts[1] == 0 and abs(counts[0] - 0.25) < 0.01


def test_cpu_and_gpu_generate_the_same(backend: Backend) -> None:
    cpu = SimInternet(SMALL, Backend.CPU)
    other = SimInternet(SMALL, backend)
    a = _host(cpu.ground_truth())
    b = _host(other.ground_truth())
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert cpu.to_arrow(cpu.ground_truth()).equals(other.to_arrow(other.ground_truth()))

"""The simulated scanner: what scans and probes find, how they are counted, blocklisted space."""

from __future__ import annotations

import numpy as np
import pytest

from gpsgpu import schema
from gpsgpu.backend import Backend
from gpsgpu.blocklist import Blocklist
from gpsgpu.sim import SimInternet, SimParams
from gpsgpu.sim.scanner import SimScanner, blocked_in_ranges


@pytest.fixture(scope="module")
def internet() -> SimInternet:
    return SimInternet(SimParams(hosts=20_000, seed=3))


@pytest.fixture(scope="module")
def truth(internet: SimInternet):
    return internet.ground_truth()


def test_scan_finds_what_the_rows_cover_and_counts_probes(internet: SimInternet, truth) -> None:
    nets = internet.prefixes[:3]
    ports = np.array([80, 7547, 22], dtype=np.uint16)
    for cached in (None, truth):
        scanner = SimScanner(internet, truth=cached)
        found = scanner.scan(ports, nets, 16)
        assert scanner.n_probes == 3 * 65536
        want = np.zeros(len(truth), dtype=bool)
        for port, net in zip(ports, nets, strict=True):
            want |= (np.asarray(truth.port) == port) & ((np.asarray(truth.ip) >> 16) == (int(net) >> 16))
        np.testing.assert_array_equal(np.asarray(found.keys(np)), np.asarray(truth.keys(np))[want])


def test_scan_of_a_longer_prefix(internet: SimInternet, truth) -> None:
    ip = int(truth.ip[len(truth) // 2])
    port = int(truth.port[len(truth) // 2])
    scanner = SimScanner(internet)
    found = scanner.scan([port], [ip], 24)
    assert scanner.n_probes == 256
    assert ip in np.asarray(found.ip).tolist()
    assert (np.asarray(found.ip) >> 8 == ip >> 8).all() and (np.asarray(found.port) == port).all()


def test_probe_answers_and_counts(internet: SimInternet, truth) -> None:
    real_ip, real_port = np.asarray(truth.ip[:50]), np.asarray(truth.port[:50])
    fake_port = (real_port.astype(np.int64) % 60000 + 1111).astype(np.uint16)
    ips = np.concatenate([real_ip, real_ip])
    ports = np.concatenate([real_port, fake_port])
    known = set(np.asarray(truth.keys(np)).tolist())
    expect = np.array([k in known for k in schema.pack_service(ips, ports).tolist()])
    for cached in (None, truth):
        scanner = SimScanner(internet, truth=cached)
        got = np.asarray(scanner.probe(ips, ports))
        np.testing.assert_array_equal(got, expect)
        assert scanner.n_probes == ips.size


def test_blocklisted_space_is_never_probed(internet: SimInternet, truth) -> None:
    ip = int(truth.ip[0])
    user = Blocklist.from_cidrs([f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.0/24"])
    scanner = SimScanner(internet, blocklist=Blocklist.default().union(user), truth=truth)
    # A probe of a blocklisted target costs nothing and finds nothing, even where a service is.
    assert not np.asarray(scanner.probe([ip, 167772161], [int(truth.port[0]), 80])).any()  # + 10.0.0.1
    assert scanner.n_probes == 0 and scanner.n_refused == 2
    # A /16 row loses its blocklisted /24; nothing found there.
    found = scanner.scan([int(truth.port[0])], [ip], 16)
    assert scanner.n_probes == 65536 - 256
    assert not ((np.asarray(found.ip) >> 8) == ip >> 8).any()
    # A row wholly in blocklisted space costs nothing.
    scanner.scan([80], [0x0A000000], 16)
    assert scanner.n_probes == 65536 - 256


def test_a_skipping_scanner_leaves_known_hosts_out(internet: SimInternet, truth) -> None:
    ip, port = int(truth.ip[0]), int(truth.port[0])
    known = np.array([ip, ip, ip ^ 1], np.uint32)  # repeats count once
    scanner = SimScanner(internet, truth=truth)
    skipping = scanner.skipping(known)
    assert skipping.blocklist.contains(known).all() and not scanner.blocklist.contains(known).any()
    found = skipping.scan([port], [ip], 24)
    assert skipping.n_probes == 254 and scanner.n_probes == 0
    assert ip not in np.asarray(found.ip).tolist()
    assert ip in np.asarray(scanner.scan([port], [ip], 24).ip).tolist()
    # Predictions still reach the known hosts: only the skipping scanner leaves them out.
    assert np.asarray(scanner.probe([ip], [port])).all()


def test_seed_scan_counts_all_ports_of_each_sampled_address(internet: SimInternet) -> None:
    scanner = SimScanner(internet)
    seed, n_sampled = scanner.seed_scan(0.01)
    assert scanner.n_probes == n_sampled * 65536
    assert 0.008 * internet.n_addresses < n_sampled < 0.012 * internet.n_addresses
    assert np.asarray(internet.seed_mask(seed.ip, 0.01)).all()


def test_blocked_in_ranges_counts_overlaps() -> None:
    bl = Blocklist.from_cidrs(["10.0.0.0/8", "192.168.1.0/24"])
    first = np.array([0x0A000000, 0xC0A80000, 0x01000000, 0x09FFFF00])
    last = first + np.array([0xFFFF, 0xFFFF, 0xFFFF, 0x1FF])
    np.testing.assert_array_equal(blocked_in_ranges(bl, first, last), [65536, 256, 0, 256])


def test_scan_on_gpu_matches_cpu(backend: Backend) -> None:
    params = SimParams(hosts=20_000, seed=3)
    results = []
    for b in (Backend.CPU, backend):
        internet = SimInternet(params, b)
        found = SimScanner(internet).scan([80, 443], internet.prefixes[:2], 16)
        results.append(internet.to_arrow(found))
    assert results[0].equals(results[1])

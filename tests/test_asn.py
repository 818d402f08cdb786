"""Longest-prefix match of the ASN table against a brute-force oracle."""

from __future__ import annotations

import ipaddress

import numpy as np

from gpsgpu.asn import AsnTable
from gpsgpu.backend import Backend


def test_longest_prefix_wins(backend: Backend) -> None:
    table = AsnTable.from_lines(["10.0.0.0/8\t1", "10.1.0.0/16\t2", "10.1.2.0/24\t3", "10.1.2.3/32\t{4,5}"])
    ips = [ipaddress.IPv4Address(a) for a in ("10.9.9.9", "10.1.9.9", "10.1.2.9", "10.1.2.3", "11.0.0.0")]
    got = table.lookup(backend.xp.asarray(np.array([int(a) for a in ips], dtype=np.uint32)))
    assert got.tolist() == [1, 2, 3, 4, 0]


def test_random_tables_match_brute_force() -> None:
    rng = np.random.default_rng(7)
    lines, nets = [], []
    for index in range(300):
        length = int(rng.integers(8, 29))
        net = ipaddress.IPv4Network((int(rng.integers(0, 2**32)), length), strict=False)
        lines.append(f"{net}\t{index + 1}")
        nets.append((net, index + 1))
    table = AsnTable.from_lines(lines)
    probe = np.concatenate([rng.integers(0, 2**32, 2000), [int(n.network_address) for n, _ in nets]]).astype(
        np.uint32
    )
    got = table.lookup(probe)
    for address, asn in zip(probe.tolist(), got.tolist(), strict=True):
        matches = [(n.prefixlen, a) for n, a in nets if ipaddress.IPv4Address(address) in n]
        best = 0
        if matches:  # the longest prefix; for a prefix listed twice the later line wins, as in pyasn
            top = max(length for length, _ in matches)
            best = [a for length, a in matches if length == top][-1]
        assert asn == best

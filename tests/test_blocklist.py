"""The built-in IANA blocklist, ZMap-format files, membership and prefix subtraction."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpsgpu.backend import Backend
from gpsgpu.blocklist import IANA_SPECIAL_PURPOSE, Blocklist
from gpsgpu.errors import UsageError
from gpsgpu.io.blocklist import effective_blocklist, read_blocklist


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def test_default_blocklist_covers_every_iana_range() -> None:
    blocklist = Blocklist.default()
    for cidr, _ in IANA_SPECIAL_PURPOSE:
        net = ipaddress.IPv4Network(cidr)
        assert blocklist.covers(int(net.network_address), net.prefixlen), cidr
    probes = ["10.0.0.1", "127.0.0.1", "192.168.1.1", "100.64.0.1", "224.0.0.1", "255.255.255.255", "0.1.2.3"]
    assert blocklist.contains(np.array([ip(a) for a in probes], dtype=np.uint32)).all()
    public = ["8.8.8.8", "1.1.1.1", "100.128.0.0", "172.32.0.1", "223.255.255.255", "11.0.0.0"]
    assert not blocklist.contains(np.array([ip(a) for a in public], dtype=np.uint32)).any()


def test_contains_on_backend(backend: Backend) -> None:
    xp = backend.xp
    blocklist = Blocklist.from_cidrs(["10.0.0.0/8", "192.0.2.7"])
    ips = xp.asarray(
        np.array(
            [
                ip("9.255.255.255"),
                ip("10.0.0.0"),
                ip("10.255.255.255"),
                ip("11.0.0.0"),
                ip("192.0.2.7"),
                ip("192.0.2.8"),
            ],
            dtype=np.uint32,
        )
    )
    got = blocklist.contains(ips)
    assert got.tolist() == [False, True, True, False, True, False]
    assert Blocklist.empty().contains(ips).tolist() == [False] * 6


def test_zmap_format_file(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.conf"
    path.write_text(
        "# opt-out requests\n203.0.114.0/24  # a university\n\n8.8.8.8\n2001:db8::/32\n9.9.9.0/24\n"
    )
    blocklist = read_blocklist(path)
    assert blocklist.n_ipv6_skipped == 1 and blocklist.n_addresses == 256 + 1 + 256
    merged = effective_blocklist([path])
    assert merged.contains(
        np.array([ip("8.8.8.8"), ip("10.1.1.1"), ip("8.8.8.9")], dtype=np.uint32)
    ).tolist() == [
        True,
        True,
        False,
    ]


def test_bad_blocklist_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_text("1.2.3.0/24\nnot-an-address\n")
    with pytest.raises(UsageError, match="line 2"):
        read_blocklist(path)
    with pytest.raises(UsageError, match="no such file"):
        read_blocklist(tmp_path / "missing.conf")


def test_allowed_cidrs_subtracts_blocked_space() -> None:
    blocklist = Blocklist.from_cidrs(["93.184.0.0/24", "93.184.128.0/17"])
    allowed = blocklist.allowed_cidrs(ip("93.184.0.0"), 16)
    covered = sorted(
        (int(n.network_address), int(n.broadcast_address)) for n in map(ipaddress.IPv4Network, allowed)
    )
    assert covered[0][0] == ip("93.184.1.0") and covered[-1][1] == ip("93.184.127.255")
    assert sum(b - a + 1 for a, b in covered) == 65536 - 256 - 32768
    assert blocklist.allowed_cidrs(ip("8.8.0.0"), 16) == ["8.8.0.0/16"]
    assert Blocklist.default().allowed_cidrs(ip("10.0.0.0"), 16) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), min_size=0, max_size=8),
    st.integers(0, 2**32 - 1),
    st.integers(8, 24),
)
def test_allowed_cidrs_is_an_exact_cover(blocked: list[tuple[int, int]], network: int, length: int) -> None:
    cidrs = [str(ipaddress.IPv4Network((addr, plen), strict=False)) for addr, plen in blocked]
    blocklist = Blocklist.from_cidrs(cidrs)
    nets = [ipaddress.IPv4Network(c) for c in cidrs]
    prefix = ipaddress.IPv4Network((network, length), strict=False)
    expected = {prefix}
    for net in nets:
        expected = {
            piece
            for part in expected
            for piece in (
                [part]
                if not part.overlaps(net)
                else ([] if part.subnet_of(net) else part.address_exclude(net))
            )
        }
    allowed = [ipaddress.IPv4Network(c) for c in blocklist.allowed_cidrs(int(prefix.network_address), length)]
    assert sum(n.num_addresses for n in allowed) == sum(n.num_addresses for n in expected)
    assert not any(a.overlaps(b) for a in allowed for b in nets)
    assert all(a.subnet_of(prefix) for a in allowed)


def test_overlapping_and_adjacent_ranges_merge() -> None:
    blocklist = Blocklist.from_cidrs(["10.0.0.0/9", "10.128.0.0/9", "10.0.0.0/16", "11.0.0.0/8"])
    assert len(blocklist) == 1 and blocklist.n_addresses == 2 * 2**24
    assert blocklist.to_lines() == ["10.0.0.0/7"]


def test_from_addresses_merges_single_addresses() -> None:
    blocklist = Blocklist.from_addresses(np.array([5, 3, 4, 10, 10], np.uint32))
    assert blocklist.starts.tolist() == [3, 10] and blocklist.ends.tolist() == [5, 10]
    assert blocklist.to_lines() == ["0.0.0.3/32", "0.0.0.4/31", "0.0.0.10/32"]
    assert len(Blocklist.from_addresses(np.zeros(0, np.uint32))) == 0

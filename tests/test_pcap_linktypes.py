"""Captures on every common link layer: real samples (tests/data/real/pcap, see SOURCES.md) and
synthetic pcap/pcapng files written here byte by byte, in both byte orders and time resolutions."""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gpsgpu.errors import InputError
from gpsgpu.io.probes import read_probes

REAL = Path(__file__).parent / "data" / "real" / "pcap"
TS = 1_700_000_000


def ip4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def probes_of(path: Path) -> list[tuple[int, int, int, int]]:
    """``(ts, src, dst, dport)`` rows of a capture, in file order."""
    table = read_probes([str(path)]).table
    return list(zip(*(table[c].to_pylist() for c in ("ts", "src", "dst", "dport")), strict=True))


# --- real captures ---------------------------------------------------------------------------------

REAL_CASES = [
    # file, link layer, probes (ts in us, src, dst, dport), filtered by reason
    (
        "zeek_http-vlan-0.pcap",  # Ethernet, one 802.1Q tag on every frame: was 14 x not_ip
        [(1362692526869344, "141.142.228.5", "192.150.187.43", 80)],
        {"not_syn": 13},
    ),
    (
        "zeek_vlan-qinqinq.pcap",  # three stacked 0x8100 tags
        [(1362692526869344, "141.142.228.5", "192.150.187.43", 80)],
        {"not_syn": 13},
    ),
    (
        "zeek_vlan-pcp-dei.pcapng",  # pcapng, tagged and untagged frames mixed
        [(1763070394994237, "192.168.1.100", "192.168.1.200", 80)] * 3,
        {"not_syn": 6},
    ),
    ("tcpdump_802.1ad_QinQ.pcap", [], {"not_ip": 2}),  # 0x88a8 then 0x8100 tags around ARP
    (
        "tcpdump_ldp-common-session.pcap",  # tagged UDP hellos, untagged TCP session
        [(1691670251046122, "192.168.0.2", "192.168.0.1", 646)],
        {"not_syn": 12, "not_tcp": 9},
    ),
    (
        "tcpdump_pptp.pcap",  # big-endian classic pcap, Ethernet
        [(954147395148077, "10.1.1.11", "10.1.1.10", 1723)],
        {"not_syn": 21, "not_tcp": 1},
    ),
    (
        "tcpdump_tcp-handshake-nano.pcap",  # nanosecond pcap, Linux cooked capture (DLT 113)
        [(1418145369924505, "131.155.215.69", "137.116.81.94", 80)],
        {"not_syn": 2},
    ),
    (
        "zeek_openjdk-25.0.2-zeek.org.pcap",  # Linux cooked capture v2 (DLT 276)
        [(1776243128835142, "192.168.64.6", "192.0.78.150", 443)],
        {"not_syn": 5},
    ),
    (
        "zeek_socks.pcap",  # BSD loopback (DLT 0), little-endian family
        [(1208299429265243, "127.0.0.1", "127.0.0.1", 1080)],
        {"not_syn": 17},
    ),
    (
        "zeek_almost-resp.pcap",  # BSD loopback with IPv4 and IPv6 (family 30, Darwin) frames
        [(1730928135309034, "127.0.0.1", "127.0.0.1", 6379)],
        {"ipv6": 2, "not_syn": 9},
    ),
    (
        "zeek_payload-syn.pcap",  # LINKTYPE_RAW (101)
        [(1567174416436962, "192.168.0.1", "192.168.0.2", 80)],
        {"not_syn": 5},
    ),
    (
        "zeek_telnet-auth-missing-name.pcap",  # LINKTYPE_IPV4 (228)
        [(1786064214112540, "10.0.0.1", "10.0.0.2", 21)],
        {"not_syn": 7},
    ),
]


@pytest.mark.parametrize(("name", "want", "filtered"), REAL_CASES, ids=[c[0] for c in REAL_CASES])
def test_real_captures(name: str, want: list[tuple[int, str, str, int]], filtered: dict[str, int]) -> None:
    got = read_probes([str(REAL / name)])
    assert probes_of(REAL / name) == [(ts, ip4(s), ip4(d), p) for ts, s, d, p in want]
    assert got.counts["filtered_by_reason"] == filtered
    assert got.counts["rejected"] == 0
    assert got.counts["records"] == len(want) + sum(filtered.values())


def test_real_unknown_linktype_is_one_error() -> None:
    with pytest.raises(InputError, match=r"unsupported pcap link type 239 \(LINKTYPE_NFLOG\)"):
        read_probes([str(REAL / "zeek_nflog-http.pcap")])


def test_sources_lists_every_sample() -> None:
    sources = (REAL / "SOURCES.md").read_text()
    for path in REAL.iterdir():
        if path.suffix in (".pcap", ".pcapng"):
            assert path.name in sources, path.name
            assert path.stat().st_size < 50_000


# --- synthetic frames ------------------------------------------------------------------------------


def ipv4(src: str, dst: str, dport: int, flags: int = 0x02, proto: int = 6) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", 40_000, dport, 1, 0, 5 << 4, flags, 1024, 0, 0)
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)  # fmt: skip
    return header + tcp


IPV6 = bytes([0x60]) + bytes(7) + bytes(32) + ipv4("1.1.1.1", "2.2.2.2", 80)[20:]
MAC = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
ARP = bytes(28)


def eth(ethertype: int, payload: bytes, tags: tuple[int, ...] = ()) -> bytes:
    head = MAC + b"".join(struct.pack(">HH", tpid, 100 + i) for i, tpid in enumerate(tags))
    return head + struct.pack(">H", ethertype) + payload


def sll(ethertype: int, payload: bytes) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, MAC[:6] + b"\0\0", ethertype) + payload


def sll2(ethertype: int, payload: bytes) -> bytes:
    return struct.pack(">HHIHBB8s", ethertype, 0, 2, 1, 0, 6, MAC[:6] + b"\0\0") + payload


def null(family: int, payload: bytes, order: str) -> bytes:
    return struct.pack(order + "I", family) + payload


def ppp(proto: int, payload: bytes, framed: bool = True) -> bytes:
    return (b"\xff\x03" if framed else b"") + struct.pack(">H", proto) + payload


SYN_A = ("1.2.3.4", "100.64.0.1", 23)
SYN_B = ("5.6.7.8", "100.64.0.2", 8080)


def frames_for(link: str) -> tuple[int, list[bytes], dict[str, int]]:
    """``(linktype, frames, filtered)``: frames 1 and 3 are the probes SYN_A and SYN_B (Linux
    cooked captures add a third, SYN_B behind an 802.1Q tag the kernel left in place)."""
    a, b, synack = ipv4(*SYN_A), ipv4(*SYN_B), ipv4("9.9.9.9", "100.64.0.3", 80, flags=0x12)
    if link == "ethernet-snap":
        snap = struct.pack(">H", 46) + b"\xaa\xaa\x03\x00\x00\x00"
        frames = [MAC + snap + struct.pack(">H", 0x0800) + p for p in (a, synack, b)]
        return (
            1,
            [*frames, MAC + struct.pack(">H", 38) + b"\x42\x42\x03" + bytes(35)],
            {"not_syn": 1, "not_ip": 1},
        )
    if link.startswith("ethernet"):
        tags = {
            "ethernet": (),
            "ethernet-8021q": (0x8100,),
            "ethernet-8021ad": (0x88A8, 0x8100),
            "ethernet-9100": (0x9100, 0x8100),
            "ethernet-3tags": (0x88A8, 0x8100, 0x8100),
        }[link]
        return (
            1,
            [
                eth(0x0800, a, tags),
                eth(0x0800, synack, tags),
                eth(0x0800, b, tags),
                eth(0x86DD, IPV6, tags),
                eth(0x0806, ARP, tags),
            ],
            {"not_syn": 1, "ipv6": 1, "not_ip": 1},
        )
    if link in ("sll", "sll2"):
        wrap = sll if link == "sll" else sll2
        return (
            113 if link == "sll" else 276,
            [
                wrap(0x0800, a),
                wrap(0x0800, synack),
                wrap(0x0800, b),
                wrap(0x86DD, IPV6),
                wrap(0x0806, ARP),
                wrap(0x8100, struct.pack(">HH", 7, 0x0800) + b),
            ],
            {"not_syn": 1, "ipv6": 1, "not_ip": 1},
        )
    if link.startswith("raw"):
        linktype = int(link.split("-")[1])
        frames = [a, synack, b] + ([IPV6] if linktype != 228 else [])
        return linktype, frames, {"not_syn": 1} | ({"ipv6": 1} if linktype != 228 else {})
    if link.startswith(("null", "loop")):
        linktype = 0 if link.startswith("null") else 108
        order = "<" if link.endswith("le") else ">"
        return (
            linktype,
            [
                null(2, a, order),
                null(2, synack, order),
                null(2, b, order),
                null(30, IPV6, order),
                null(24, IPV6, order),
                null(10, IPV6, order),
                null(7, ARP, order),
            ],
            {"not_syn": 1, "ipv6": 3, "not_ip": 1},
        )
    if link == "ppp":
        return (
            9,
            [
                ppp(0x0021, a),
                ppp(0x0021, synack, framed=False),
                b"\xff\x03\x21" + b,
                ppp(0x0057, IPV6),
                ppp(0xC021, ARP),
            ],
            {"not_syn": 1, "ipv6": 1, "not_ip": 1},
        )
    if link == "c_hdlc":
        hdlc = [
            b"\x0f\x00" + struct.pack(">H", t) + p for t, p in ((0x0800, a), (0x0800, synack), (0x0800, b))
        ]
        return 104, [*hdlc, b"\x8f\x00\x80\x35" + ARP], {"not_syn": 1, "not_ip": 1}
    raise AssertionError(link)


LINKS = [
    "ethernet",
    "ethernet-8021q",
    "ethernet-8021ad",
    "ethernet-9100",
    "ethernet-3tags",
    "ethernet-snap",
    "sll",
    "sll2",
    "raw-12",
    "raw-14",
    "raw-101",
    "raw-228",
    "null-le",
    "null-be",
    "loop-be",
    "loop-le",
    "ppp",
    "c_hdlc",
]
PCAP_MAGIC = {(order, nano): (0xA1B23C4D if nano else 0xA1B2C3D4) for order in "<>" for nano in (False, True)}


def write_pcap(path: Path, linktype: int, frames: list[bytes], order: str = "<", nano: bool = False) -> Path:
    """A classic pcap file; frame i is stamped TS + i seconds + 0.25 s (+ 7 ns when ``nano``)."""
    out = [struct.pack(order + "IHHiIII", PCAP_MAGIC[order, nano], 2, 4, 0, 0, 65_535, linktype)]
    for i, frame in enumerate(frames):
        frac = 250_000_007 if nano else 250_000
        out.append(struct.pack(order + "IIII", TS + i, frac, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def expected(stamps: list[int], link: str = "") -> list[tuple[int, int, int, int]]:
    want = [
        (stamps[0], ip4(SYN_A[0]), ip4(SYN_A[1]), SYN_A[2]),
        (stamps[2], ip4(SYN_B[0]), ip4(SYN_B[1]), SYN_B[2]),
    ]
    if link in ("sll", "sll2"):
        want.append((stamps[5], ip4(SYN_B[0]), ip4(SYN_B[1]), SYN_B[2]))
    return want


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize(("order", "nano"), [("<", False), (">", False), ("<", True), (">", True)])
def test_synthetic_pcap(tmp_path: Path, link: str, order: str, nano: bool) -> None:
    linktype, frames, filtered = frames_for(link)
    path = write_pcap(tmp_path / "cap.pcap", linktype, frames, order, nano)
    got = read_probes([str(path)])
    assert probes_of(path) == expected([(TS + i) * 1_000_000 + 250_000 for i in range(len(frames))], link)
    assert got.counts["filtered_by_reason"] == filtered
    assert got.counts["records"] == len(frames) and got.counts["rejected"] == 0


def test_fcs_bits_of_the_linktype_field(tmp_path: Path) -> None:
    """The top bits of a pcap header's link type say an FCS follows each frame, not another link."""
    _, frames, _ = frames_for("ethernet-8021q")
    for field in (0x04000001, 0x30000001, 0x40000001):
        path = write_pcap(tmp_path / f"{field:x}.pcap", field, [f + b"\xde\xad\xbe\xef" for f in frames])
        assert [p[3] for p in probes_of(path)] == [SYN_A[2], SYN_B[2]]


def test_cut_link_headers_are_rejected(tmp_path: Path) -> None:
    _, frames, _ = frames_for("ethernet-8021ad")
    cut = [frames[0], frames[0][:14], frames[0][:17], MAC[:10], ipv4(*SYN_A)[:30]]
    got = read_probes([str(write_pcap(tmp_path / "cut.pcap", 1, cut))])
    assert got.table.num_rows == 1
    reasons = {e["line"]: e["reason"] for e in got.rejects.entries}
    assert reasons == {2: "truncated_packet", 3: "truncated_packet", 4: "truncated_packet"}
    assert got.counts["filtered_by_reason"] == {"not_ip": 1}  # frame 5: a length field, no SNAP


# --- pcapng ----------------------------------------------------------------------------------------


def block(order: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack(order + "II", btype, len(body) + 12) + body + struct.pack(order + "I", len(body) + 12)


def idb(order: str, linktype: int, tsresol: int | None) -> bytes:
    options = b""
    if tsresol is not None:
        options = struct.pack(order + "HHB", 9, 1, tsresol) + bytes(3) + struct.pack(order + "HH", 0, 0)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, 0) + options)


def epb(order: str, iface: int, units: int, frame: bytes) -> bytes:
    head = struct.pack(order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame))
    return block(order, 6, head + frame)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_of_different_links_and_resolutions(tmp_path: Path, order: str) -> None:
    """One section, four interfaces: Ethernet+802.1Q in us (default), SLL2 in ns, NULL in 2^-20 s,
    raw IPv4 in ms; probes keep their interface's link and clock."""
    shb = block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    ifaces = [(1, None, 10**6), (276, 9, 10**9), (0, 0x80 | 20, 2**20), (228, 3, 10**3)]
    links = ["ethernet-8021q", "sll2", "null-le", "raw-228"]
    data = [shb] + [idb(order, lt, res) for lt, res, _ in ifaces]
    want, n_frames = [], 0
    for iface, (link, (_, _, per_s)) in enumerate(zip(links, ifaces, strict=True)):
        _, frames, _ = frames_for(link)
        for i, frame in enumerate(frames[:3]):
            seconds = TS + 10 * iface + i
            data.append(epb(order, iface, seconds * per_s + per_s // 2, frame))
        n_frames += 3
        want += expected([(TS + 10 * iface + i) * 1_000_000 + 500_000 for i in range(3)])
    path = tmp_path / "multi.pcapng"
    path.write_bytes(b"".join(data))
    got = read_probes([str(path)])
    assert probes_of(path) == want
    assert got.counts["records"] == n_frames and got.counts["filtered_by_reason"] == {"not_syn": 4}


def test_pcapng_unknown_interface_link_is_one_error(tmp_path: Path) -> None:
    order = "<"
    shb = block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    _, frames, _ = frames_for("ethernet")
    path = tmp_path / "wifi.pcapng"
    # An interface of an unknown link that carries no packets is no error; one that does is.
    path.write_bytes(shb + idb(order, 1, None) + idb(order, 127, None) + epb(order, 0, TS * 10**6, frames[0]))
    assert len(probes_of(path)) == 1
    path.write_bytes(path.read_bytes() + epb(order, 1, TS * 10**6, b"\0" * 40))
    with pytest.raises(InputError, match=r"unsupported pcapng \(interface 1\) link type 127 \(LINKTYPE_IEEE"):
        read_probes([str(path)])


# --- CLI -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("linktype", "named"), [(147, "147"), (105, "105 (LINKTYPE_IEEE802_11)")])
def test_cli_unknown_linktype_exits_3_with_one_line(tmp_path: Path, linktype: int, named: str) -> None:
    _, frames, _ = frames_for("ethernet")
    path = write_pcap(tmp_path / "odd.pcap", linktype, frames)
    out = tmp_path / "probes.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", "portdist", "ingest", str(path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert f"unsupported pcap link type {named}" in done.stderr and "odd.pcap" in done.stderr
    assert not out.exists()

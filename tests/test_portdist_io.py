"""port2dist input: pcap/pcapng captures written here with dpkt, CSV/Parquet flow records, rejects."""

from __future__ import annotations

import gzip
import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import dpkt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpsgpu.errors import InputError
from gpsgpu.io.probes import read_probes
from gpsgpu.portdist import columns as C

TS = 1_700_000_000


def gpsgpu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", *args], capture_output=True, text=True, timeout=300
    )


def ip_packet(src: str, dst: str, proto: int, payload: dpkt.Packet | bytes) -> dpkt.ip.IP:
    return dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, data=payload, ttl=64)


def tcp(dport: int, flags: int) -> dpkt.tcp.TCP:
    return dpkt.tcp.TCP(sport=40000, dport=dport, flags=flags, seq=1)


def ether(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=ethertype, data=payload))


SYN, ACK, RST = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_RST


def mixed_packets() -> list[bytes]:
    """Ethernet frames: 3 probes, 6 packets to skip, 3 corrupt ones (packets 10, 11, 12)."""
    ip6 = dpkt.ip6.IP6(
        src=b"\x20" + b"\x00" * 15, dst=b"\x20" + b"\x01" * 15, nxt=6, hlim=64, data=tcp(80, SYN)
    )
    ip6.plen = len(ip6.data)
    arp = dpkt.arp.ARP()
    return [
        ether(bytes(ip_packet("1.2.3.4", "100.64.0.1", 6, tcp(23, SYN)))),  # 1 probe
        ether(bytes(ip_packet("1.2.3.4", "100.64.0.2", 6, tcp(2323, SYN)))),  # 2 probe
        ether(bytes(ip_packet("1.2.3.4", "100.64.0.3", 6, tcp(80, SYN | ACK)))),  # 3 SYN-ACK (backscatter)
        ether(bytes(ip_packet("1.2.3.4", "100.64.0.3", 6, tcp(80, RST)))),  # 4 RST
        ether(bytes(ip_packet("5.6.7.8", "100.64.0.4", 17, dpkt.udp.UDP(sport=1, dport=53)))),  # 5 UDP
        ether(bytes(ip6), ethertype=0x86DD),  # 6 IPv6 SYN
        ether(bytes(arp), ethertype=0x0806),  # 7 ARP
        ether(bytes(ip_packet("9.9.9.9", "100.64.0.5", 6, tcp(3306, SYN)))),  # 8 probe
        ether(bytes(ip_packet("9.9.9.9", "100.64.0.5", 6, tcp(3306, ACK)))),  # 9 ACK
        ether(b"\x45\x00\x00"),  # 10 IPv4 header cut short
        ether(b"\x65" + b"\x00" * 39),  # 11 an IPv6 version nibble in an IPv4 frame
        ether(
            bytes(ip_packet("1.1.1.1", "100.64.0.6", 6, b""))[:20] + b"\x9c\x40\x00\x50\x00\x00"
        ),  # 12 TCP cut
    ]


def write_pcap(
    path: Path, packets: list[bytes], linktype: int = dpkt.pcap.DLT_EN10MB, nano: bool = False
) -> Path:
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=linktype, nano=nano)
        for i, pkt in enumerate(packets):
            writer.writepkt(pkt, ts=TS + i + 0.25)
    return path


def test_pcap_probes_filters_and_rejects(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "cap.pcap", mixed_packets())
    got = read_probes([str(path)])
    table = got.table.to_pandas()
    assert table[C.DPORT].tolist() == [23, 2323, 3306]
    assert table[C.SRC].tolist() == [0x01020304, 0x01020304, 0x09090909]
    assert table[C.DST].tolist() == [0x64400001, 0x64400002, 0x64400005]
    assert table[C.TS].tolist() == [(TS + i) * 1_000_000 + 250_000 for i in (0, 1, 7)]
    counts = got.counts
    assert counts["records"] == 12
    assert counts["filtered_by_reason"] == {"ipv6": 1, "not_ip": 1, "not_syn": 3, "not_tcp": 1}
    assert counts["rejected_by_reason"] == {"malformed": 1, "truncated_packet": 2}
    assert sorted(e["line"] for e in got.rejects.entries) == [10, 11, 12]
    assert got.inputs[0]["format"] == "pcap"


@pytest.mark.parametrize(
    ("linktype", "wrap"),
    [
        (
            dpkt.pcap.DLT_LINUX_SLL,
            lambda ip: bytes(dpkt.sll.SLL(type=0, hrd=1, hlen=6, hdr=b"\x00" * 8, ethtype=0x0800, data=ip)),
        ),
        (101, bytes),  # raw IP
    ],
)
def test_pcap_link_types(tmp_path: Path, linktype: int, wrap) -> None:
    packets = [wrap(ip_packet("8.8.4.4", "100.64.1.1", 6, tcp(p, SYN))) for p in (22, 2222)]
    packets.append(wrap(ip_packet("8.8.4.4", "100.64.1.1", 6, tcp(22, SYN | ACK))))
    got = read_probes([str(write_pcap(tmp_path / "cap.pcap", packets, linktype=linktype))])
    assert got.table[C.DPORT].to_pylist() == [22, 2222]
    assert got.counts["filtered_by_reason"] == {"not_syn": 1}


def test_pcap_nanosecond_and_gzip(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "ns.pcap", mixed_packets()[:2], nano=True)
    gz = tmp_path / "ns.pcap.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    got = read_probes([str(gz)])
    assert got.table[C.TS].to_pylist() == [TS * 1_000_000 + 250_000, (TS + 1) * 1_000_000 + 250_000]
    assert got.inputs[0]["compression"] == "gzip"


def test_pcapng(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcapng"
    with open(path, "wb") as handle:
        writer = dpkt.pcapng.Writer(handle, linktype=dpkt.pcap.DLT_EN10MB)
        for i, pkt in enumerate(mixed_packets()):
            writer.writepkt(pkt, ts=TS + i + 0.5)
    got = read_probes([str(path)])
    assert got.table[C.DPORT].to_pylist() == [23, 2323, 3306]
    assert got.table[C.TS].to_pylist()[0] == TS * 1_000_000 + 500_000
    assert got.counts["rejected"] == 3 and got.counts["records"] == 12
    assert got.inputs[0]["format"] == "pcapng"


def test_truncated_pcap(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "cut.pcap", mixed_packets()[:9])
    path.write_bytes(path.read_bytes()[:-10])  # the capture stops inside packet 9
    with pytest.raises(InputError, match=r"truncated pcap: file ends inside packet 9 .* 8 packets read"):
        read_probes([str(path)])
    got = read_probes([str(path)], allow_truncated=True)
    assert got.table.num_rows == 3
    assert got.counts["records"] == 9
    assert got.counts["rejected_by_reason"] == {"truncated_file": 1}
    done = gpsgpu("portdist", "ingest", str(path), "-o", str(tmp_path / "p.parquet"))
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "8 packets read before it" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "p.parquet").exists()


CSV = b"""ts,src,dst,dport,proto,flags
1700000000.5,1.2.3.4,100.64.0.1,23,tcp,S
1700000001,1.2.3.4,100.64.0.2,2323,6,0x02
2023-11-14T22:13:22Z,16909060,100.64.0.2,80,TCP,
1700000003,1.2.3.4,100.64.0.2,80,tcp,SA
1700000004,1.2.3.4,100.64.0.2,53,udp,
1700000005,1.2.3.400,100.64.0.2,80,tcp,S
1700000006,1.2.3.4,100.64.0.2,70000,tcp,S
1700000007,1.2.3.4,100.64.0.2
,1.2.3.4,100.64.0.2,22,tcp,S
yesterday,1.2.3.4,100.64.0.2,22,tcp,S
"""


def test_csv_and_parquet_records(tmp_path: Path) -> None:
    path = tmp_path / "flows.csv"
    path.write_bytes(CSV)
    got = read_probes([str(path)])
    assert got.table[C.DPORT].to_pylist() == [23, 2323, 80]
    assert got.table[C.TS].to_pylist() == [
        1_700_000_000_500_000,
        1_700_000_001_000_000,
        1_700_000_002_000_000,
    ]
    assert got.table[C.SRC].to_pylist() == [0x01020304] * 3
    assert got.counts["filtered_by_reason"] == {"not_syn": 1, "not_tcp": 1}
    rejected = {(e["line"], e["reason"]) for e in got.rejects.entries}
    assert rejected == {
        (7, "invalid_ip"),
        (8, "invalid_port"),
        (9, "malformed"),
        (10, "missing_field"),
        (11, "invalid_timestamp"),
    }
    assert got.counts["records"] == 10
    # The same records as Parquet (typed columns), rows numbered from 1.
    table = pa.table(
        {
            C.TS: pa.array([1.7e9, 1.7e9 + 1, 1.7e9 + 2]),
            C.SRC: pa.array([1, 2, 2**33], pa.int64()),
            C.DST: pa.array(["100.64.0.1", "100.64.0.1", "100.64.0.1"]),
            C.DPORT: pa.array([80, 443, 22], pa.int32()),
        }
    )
    pq.write_table(table, tmp_path / "flows.parquet")
    got = read_probes([str(tmp_path / "flows.parquet")])
    assert got.table[C.DPORT].to_pylist() == [80, 443]
    assert [(e["line"], e["reason"]) for e in got.rejects.entries] == [(3, "invalid_ip")]


def test_missing_columns_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "flows.csv"
    path.write_bytes(b"time,saddr,port\n1,1.2.3.4,80\n")
    with pytest.raises(InputError, match="missing ts, src, dst, dport"):
        read_probes([str(path)])


def test_cli_ingest_and_reject_rate(tmp_path: Path) -> None:
    good = tmp_path / "flows.csv"
    good.write_bytes(
        b"ts,src,dst,dport\n" + b"".join(b"%d,1.2.3.4,100.64.0.1,%d\n" % (TS + i, 80 + i) for i in range(200))
    )
    out = tmp_path / "probes.parquet"
    done = gpsgpu("portdist", "ingest", str(good), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).num_rows == 200
    meta = json.loads((tmp_path / "probes.metadata.json").read_text())
    assert meta["counts"]["probes"] == 200 and meta["inputs"]["files"][0]["sha256"]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(CSV)  # 5 of 10 records rejected: 50% > 1%
    out2 = tmp_path / "bad.parquet"
    done = gpsgpu("portdist", "ingest", str(bad), "-o", str(out2))
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0 and "5 of 10 records rejected" in done.stderr
    assert not out2.exists()
    rejects = [json.loads(line) for line in (tmp_path / "bad.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [7, 8, 9, 10, 11]
    done = gpsgpu("portdist", "ingest", str(bad), "-o", str(out2), "--max-reject-rate", "0.6")
    assert done.returncode == 0 and pq.read_table(out2).num_rows == 3
    assert "rejected: invalid_ip 1" in done.stderr


def test_cli_ingest_stdin(tmp_path: Path) -> None:
    buf = io.BytesIO()
    writer = dpkt.pcap.Writer(buf)
    for pkt in mixed_packets()[:3]:
        writer.writepkt(pkt, ts=TS)
    out = tmp_path / "p.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", "portdist", "ingest", "-", "-o", str(out)],
        input=buf.getvalue(),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert np.asarray(pq.read_table(out)[C.DPORT]).tolist() == [23, 2323]


def test_build_reads_flow_records_directly(tmp_path: Path) -> None:
    rows = [b"ts,src,dst,dport"]
    for s in range(40):
        ports = (80, 443, 8080) if s % 2 else (22, 2222, 3389)
        rows += [b"%d,10.0.%d.1,100.64.0.%d,%d" % (TS + 10 * s + i, s, i, p) for i, p in enumerate(ports * 3)]
    flows = tmp_path / "flows.csv"
    flows.write_bytes(b"\n".join(rows) + b"\n")
    dist = tmp_path / "dist"
    done = gpsgpu("portdist", "build", str(flows), "-o", str(dist), "-w", "day")
    assert done.returncode == 0, done.stderr
    got = json.loads(gpsgpu("portdist", "neighbors", str(dist), "80", "-k", "2").stdout)
    assert [n["port"] for n in got["neighbors"]] == [443, 8080]

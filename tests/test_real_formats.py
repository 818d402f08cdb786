"""Ingest on real scanner output as users have it (tests/data/real/<tool>/, see each SOURCES.md).

Every count here is exact: services kept, records filtered and rejected by reason.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import orjson
import pytest

from gpsgpu.config import IngestConfig
from gpsgpu.io.ingest import IngestResult, ingest
from gpsgpu.io.records import ZGRAB2_UDP, Row, extract_lzr, make_extract_zgrab2

REAL = Path(__file__).parent / "data" / "real"
LZR = REAL / "lzr"


def run(paths: list[Path], **options: Any) -> IngestResult:
    options.setdefault("max_reject_rate", 1.0)
    return ingest([str(p) for p in paths], IngestConfig(backend="cpu", **options))


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


# --- LZR: its 2020 output names the banner as Go does (`Data`) ------------------------------------


def test_lzr_2020_output_keeps_its_banners() -> None:
    path = LZR / "lzr_default_20200305043956_trimmed.json"
    records = lines(path)
    assert all("Data" in r and "data" not in r for r in records)  # the old, untagged field name
    result = run([path])
    assert result.inputs[0]["format"] == "lzr"
    assert result.counts["services"] == 5
    assert result.counts["filtered_by_reason"] == {"lzr_no_data": 1, "lzr_rst": 2}
    assert result.counts["rejected"] == 0
    frame = result.frame.sort_values("ip")
    kept = sorted((r for r in records if r["Data"] and not r["RST"]), key=lambda r: ip_int(r["saddr"]))
    assert frame.ip.tolist() == [ip_int(r["saddr"]) for r in kept]
    assert frame.banner.tolist() == [r["Data"] for r in kept]
    assert frame.window.tolist() == [r["window"] for r in kept]
    assert set(frame.port.tolist()) == {80}


def test_lzr_go_field_names_and_tagged_names_read_the_same() -> None:
    record = lines(LZR / "lzr_default_20200305043956_trimmed.json")[0]
    tagged = {k: v for k, v in record.items() if k != "Data"} | {
        "data": record["Data"],
        "fingerprint": "http",
    }
    untagged = record | {"Fingerprint": "http"}
    assert extract_lzr(tagged) == extract_lzr(untagged)
    assert extract_lzr(untagged)[0].protocol == "http"
    # When both are present, the tagged one (what LZR writes today) wins.
    both = tagged | {"Data": "something else"}
    assert extract_lzr(both)[0].banner == record["Data"]
    wrong = record | {"Data": ["not", "text"]}
    assert [(r.reason, r.detail) for r in extract_lzr(wrong)] == [
        ("invalid_type", "Data: expected a string, got list")
    ]


def test_lzr_2020_records_written_onto_one_line_are_one_reject() -> None:
    path = LZR / "lzr_default_20200312020212.json"
    assert path.read_bytes().count(b'}{"saddr"') == 1
    result = run([path], format="lzr")
    assert result.counts["services"] == 0
    assert result.counts["rejected_by_reason"] == {"malformed": 1}
    assert result.rejects.entries[0]["line"] == 1


# --- ZGrab2: UDP modules are not TCP services -------------------------------------------------------

ZGRAB2 = REAL / "zgrab2"
#: The real ZGrab2 TCP records, with the port each was scanned on (none of them carries a port).
ZGRAB2_TCP = {
    "zgrab2_http-http.json": (80, "http"),
    "zgrab2_ssh-ssh.json": (22, "ssh"),
    "zgrab2_mysql-5.5.json": (3306, "mysql"),
    "zgrab2_pop3-banner.json": (110, "pop3"),
    "zgrab2_telnet-telnet.json": (23, "telnet"),
    "zgrab2_output.json": (5672, "amqp091"),
}
ZGRAB2_NTP = ("zgrab2_ntp-4.2.6_normal.json", "zgrab2_ntp-openntp.json")


@pytest.mark.parametrize("name", ZGRAB2_NTP)
@pytest.mark.parametrize("default_port", [None, 123])
def test_zgrab2_ntp_is_filtered_as_udp(name: str, default_port: int | None) -> None:
    result = run([ZGRAB2 / name], default_port=default_port)
    assert result.counts["services"] == 0
    assert result.counts["filtered_by_reason"] == {"zgrab2_udp": 1}
    assert result.counts["rejected"] == 0


def test_zgrab2_udp_modules_whatever_they_are_named_or_port_they_carry() -> None:
    ntp = lines(ZGRAB2 / ZGRAB2_NTP[0])[0]
    module = ntp["data"]["ntp"] | {"port": 123}  # as ZGrab2 writes it since #596
    extract = make_extract_zgrab2(None)
    assert extract(ntp | {"data": {"ntp": module}}) == [ZGRAB2_UDP]
    assert extract(ntp | {"data": {"time": module}}) == [ZGRAB2_UDP]  # a named scan in `multiple`
    bacnet = {"status": "success", "protocol": "bacnet", "port": 47808, "result": {}}
    omron = {"status": "success", "protocol": "omronfins", "port": 9600, "result": {}}
    assert extract(ntp | {"data": {"bacnet": bacnet, "omronfins": omron}}) == [ZGRAB2_UDP, ZGRAB2_UDP]
    # TCP modules of the same record are still services.
    dnp3 = {"status": "success", "protocol": "dnp3", "port": 20000, "result": {}}
    items = extract(ntp | {"data": {"ntp": module, "dnp3": dnp3}})
    assert items[0] == ZGRAB2_UDP and isinstance(items[1], Row) and items[1].port == 20000


def test_zgrab2_real_tcp_records() -> None:
    for name, (port, protocol) in ZGRAB2_TCP.items():
        result = run([ZGRAB2 / name], default_port=port)
        assert result.counts["services"] == 1, name
        assert result.counts["rejected"] == result.counts["filtered"] == 0, name
        row = result.frame.iloc[0]
        assert (int(row.port), row.protocol) == (port, protocol), name
    every = run([ZGRAB2 / n for n in sorted(ZGRAB2_TCP) + list(ZGRAB2_NTP)], default_port=1)
    # 172.17.0.3 answered http, ssh, mysql and pop3 (merged on port 1), 172.17.0.2 telnet, and one AMQP host.
    assert every.counts["parsed_rows"] == 6 and every.counts["services"] == 3
    assert every.counts["filtered_by_reason"] == {"zgrab2_udp": 2}
    http = run([ZGRAB2 / "zgrab2_http-http.json"], default_port=80).frame.iloc[0]
    assert (http.http_status, http.http_server) == (200, "lighttpd/1.4.35")
    assert http.banner.startswith("HTTP/1.1 200 OK\r\n") and http.banner.endswith("HTTP INDEX</body></html>")
    ssh = run([ZGRAB2 / "zgrab2_ssh-ssh.json"], default_port=22).frame.iloc[0]
    assert ssh.banner == ssh.ssh_banner == "SSH-2.0-OpenSSH_7.2p2 Ubuntu-4ubuntu2.4"
    mysql = run([ZGRAB2 / "zgrab2_mysql-5.5.json"], default_port=3306).frame.iloc[0]
    assert mysql.app_fields == "mysql version: 5.5.58"

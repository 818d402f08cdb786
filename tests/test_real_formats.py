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
from gpsgpu.io.records import (
    CENSYS_NOT_HOST,
    ZGRAB2_UDP,
    Row,
    extract_censys,
    extract_lzr,
    make_extract_zgrab2,
)
from gpsgpu.io.rejects import RejectedRecord

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


# --- Censys: files as the APIs return them ------------------------------------------------------------

CENSYS = REAL / "censys"
#: file -> (services kept as (ip, port), filtered by reason) for every Censys sample.
CENSYS_EXPECTED: dict[str, tuple[set[tuple[str, int]], dict[str, int]]] = {
    "censys-python_view_host.json": (set(), {"censys_non_tcp": 1}),  # v2 view answer: 8.8.8.8, DNS/UDP
    "censys-python_search_hosts.json": (
        {("1.0.0.0", 443), ("1.0.0.0", 80), ("1.0.0.1", 443), ("1.0.0.1", 80)},
        {},
    ),
    "common-osint-model_140.82.121.4_censys_v2.json": (
        {("140.82.121.4", 22), ("140.82.121.4", 80), ("140.82.121.4", 443)},
        {},
    ),
    "common-osint-model_9.9.9.9_censys_v2.json": (
        {("9.9.9.9", 443), ("9.9.9.9", 5053)},
        {"censys_non_tcp": 1},
    ),
    "demisto_search_host_response.json": ({("127.0.0.1", 1024)}, {}),  # Platform search answer
    "demisto_view_host_response_trimmed.json": (  # Platform get-host answer: DNS/UDP, QUIC, 443, 853
        {("127.0.0.1", 443), ("127.0.0.1", 853)},
        {"censys_non_tcp": 2},
    ),
}


def compact(path: Path, tmp_path: Path) -> Path:
    """The file as ``jq -c .`` writes it: the same JSON on one line."""
    out = tmp_path / path.name
    out.write_bytes(orjson.dumps(orjson.loads(path.read_bytes())) + b"\n")
    return out


def keys(frame: Any) -> set[tuple[str, int]]:
    return {(str(ipaddress.IPv4Address(int(i))), int(p)) for i, p in zip(frame.ip, frame.port, strict=True)}


@pytest.mark.parametrize("name", sorted(CENSYS_EXPECTED))
def test_censys_api_answers(name: str, tmp_path: Path) -> None:
    services, filtered = CENSYS_EXPECTED[name]
    document = orjson.loads((CENSYS / name).read_bytes())
    items = extract_censys(document)
    assert {(str(ipaddress.IPv4Address(r.ip)), r.port) for r in items if isinstance(r, Row)} == services
    assert not [r for r in items if isinstance(r, RejectedRecord)]
    result = run([compact(CENSYS / name, tmp_path)])
    assert result.inputs[0]["format"] == "censys"
    assert keys(result.frame) == services
    assert result.counts["filtered_by_reason"] == filtered
    assert result.counts["rejected"] == 0


@pytest.mark.xfail(
    strict=True,
    reason="a pretty-printed whole-file JSON object needs a whole-document container in io/ingest.py",
)
@pytest.mark.parametrize("name", sorted(CENSYS_EXPECTED))
def test_censys_pretty_printed_files(name: str) -> None:
    assert (CENSYS / name).read_bytes().count(b"\n") > 10
    result = run([CENSYS / name])
    assert keys(result.frame) == CENSYS_EXPECTED[name][0]


def test_censys_platform_endpoints_fill_the_http_columns(tmp_path: Path) -> None:
    result = run([compact(CENSYS / "demisto_view_host_response_trimmed.json", tmp_path)])
    frame = result.frame.sort_values("port")
    https, dot = frame.iloc[0], frame.iloc[1]
    assert (https.port, https.protocol, https.http_status) == (443, "http", 302)
    assert (https.http_title, https.http_server) == ("302 Moved", "HTTP server (unknown)")
    assert https.http_body_sha256 == "0123456789abcdef" * 4
    assert https.http_headers.splitlines()[:2] == [
        "access-control-allow-origin: *",
        'alt-svc: h3=":443"; ma=2592000,h3-29=":443"; ma=2592000',
    ]
    assert https.banner.startswith("HTTP/1.1 302 Found\r\n")
    assert (https.tls_subject, https.tls_issuer) == ("CN=dns.google", "C=US, O=Google Trust Services, CN=WR2")
    assert (dot.port, dot.protocol, dot.banner) == (853, "unknown", "")
    assert dot.http_status != dot.http_status  # NaN: no HTTP on 853
    search = run([compact(CENSYS / "demisto_search_host_response.json", tmp_path)]).frame.iloc[0]
    assert (search.http_status, search.get("http_server"), search.get("http_title")) == (401, None, None)
    assert "www-authenticate: admin@example.com" in search.http_headers


def test_censys_platform_asset_and_hit_shapes() -> None:
    answer = orjson.loads((CENSYS / "demisto_view_host_response_trimmed.json").read_bytes())
    asset = answer["result"]  # {"resource": host, "extensions": {}}
    expected = extract_censys(answer)
    assert [type(i).__name__ for i in expected] == ["Filtered", "Filtered", "Row", "Row"]
    assert extract_censys(asset) == expected
    assert extract_censys({"host_v1": asset}) == expected
    assert extract_censys(asset["resource"]) == expected
    assert extract_censys({"result": [asset, asset]}) == expected + expected  # get many hosts
    certificate_hit = {"certificate_v1": {"resource": {"fingerprint_sha256": "ab" * 32}}}
    hits = {"result": {"hits": [certificate_hit, {"host_v1": asset}], "total_hits": 2.0}}
    assert extract_censys(hits) == [CENSYS_NOT_HOST, *expected]
    assert extract_censys({"result": {"hits": []}}) == []


def test_censys_api_error_answer_is_one_reject() -> None:
    # censys/censys-python tests/search/v2/test_hosts.py RATE_LIMIT_ERROR_JSON, as the v2 API sends it.
    answer = {
        "error": "Rate limit exceeded. See https://search.censys.io/account for rate limit details.",
        "status": "error",
        "error_type": "rate_limit_exceeded",
    }
    [rejected] = extract_censys(answer)
    assert rejected.reason == "malformed"
    assert rejected.detail.startswith("a Censys API error answer ('error'): Rate limit exceeded.")

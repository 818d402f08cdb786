"""Ingest on real scanner output as users have it (tests/data/real/<tool>/, see each SOURCES.md).

Every count here is exact: services kept, records filtered and rejected by reason.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpsgpu import schema
from gpsgpu.config import IngestConfig
from gpsgpu.io.ingest import IngestResult, ingest
from gpsgpu.io.records import (
    CENSYS_NOT_HOST,
    ZGRAB2_UDP,
    Filtered,
    Row,
    extract_censys,
    extract_gps,
    extract_lzr,
    is_censys_record,
    make_extract_zgrab2,
    make_extract_zmap,
    no_port_note,
)
from gpsgpu.io.rejects import REASONS, RejectedRecord, Rejects

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


def test_zgrab2_current_format_ntp_with_its_port_is_filtered_as_udp() -> None:
    path = ZGRAB2 / "zgrab2_README_ntp.json"
    assert lines(path)[0]["data"]["ntp"]["port"] == 123  # ZGrab2 writes the port since #596
    result = run([path])
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
    # What format detection can use to send these shapes to the Censys reader:
    for shape in (answer, asset, {"host_v1": asset}, asset["resource"], {"result": [asset]}, hits):
        assert is_censys_record(shape)
    zgrab2 = lines(ZGRAB2 / "zgrab2_http-http.json")[0]
    assert not any(
        is_censys_record(r) for r in (zgrab2, lines(LZR / "lzr_default_20200305043956_trimmed.json")[0])
    )


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


# --- Odd field types: a bad value is a null or that one record's reject, never an abort ----------------

CERT = {
    "raw": "MIIBszCCAVmgAwIBAgIUQ",
    "parsed": {
        "fingerprint_sha256": "AB" * 32,
        "subject_dn": "CN=a",
        "issuer_dn": "CN=b",
        "subject": {"organization": ["Org"]},
    },
}


def _templates() -> list[tuple[str, dict[str, Any]]]:
    """A record of every format that holds every field its extractor reads, from the real samples."""
    http = lines(ZGRAB2 / "zgrab2_http-http.json")[0] | {"port": 80, "zannotate": {"routing": {"asn": 1}}}
    response = http["data"]["http"]["result"]["response"]
    response["request"]["tls_log"] = {"handshake_log": {"server_certificates": {"certificate": CERT}}}
    ssh = lines(ZGRAB2 / "zgrab2_ssh-ssh.json")[0]
    ssh["data"]["ssh"] |= {"port": 22}
    ssh["data"]["ssh"]["result"]["key_exchange"] = {"server_host_key": {"fingerprint_sha256": "ab" * 32}}
    mysql = lines(ZGRAB2 / "zgrab2_mysql-5.5.json")[0] | {"port": 3306}
    tls = {"status": "success", "protocol": "tls", "port": 443}
    tls["result"] = {"handshake_log": {"server_certificates": {"certificate": CERT}}}
    banner = {"status": "success", "protocol": "banner", "port": 7, "result": {"banner": "hi"}}
    v2 = orjson.loads((CENSYS / "common-osint-model_9.9.9.9_censys_v2.json").read_bytes())
    v2["services"] += [
        {"port": 3306, "service_name": "MYSQL", "banner": "x", "mysql": {"server_version": "8.0"}},
        {"port": 7547, "service_name": "CWMP", "transport_protocol": "TCP", "cwmp": {"http_info": {}}},
    ]
    v2["services"][1]["tls"]["certificates"] = {
        "leaf_fp_sha_256": "ab" * 32,
        "leaf_data": {"subject_dn": "CN=a", "issuer_dn": "CN=b", "subject": {"organization": ["O"]}},
    }
    lzr_2020 = lines(LZR / "lzr_default_20200305043956_trimmed.json")[0]
    lzr = {
        "saddr": "1.2.3.4",
        "sport": 80,
        "window": 65535,
        "RST": False,
        "fingerprint": "http",
        "data": "HTTP/1.1 200 OK",
        "zannotate": {"routing": {"asn": 13335}},
    }
    zmap = {"saddr": "1.2.3.4", "sport": 80, "window": 1024, "classification": "synack", "success": 1}
    gps = {"ip": "1.2.3.4", "p": 80, "asn": 15169, "data": "x", "fingerprint": "http", "w": 65535}
    return [
        ("zgrab2", http),
        ("zgrab2", ssh),
        ("zgrab2", mysql),
        ("zgrab2", {"ip": "1.2.3.4", "data": {"tls": tls, "banner": banner}}),
        ("zgrab2", lines(ZGRAB2 / "zgrab2_ntp-openntp.json")[0]),
        ("censys", v2),
        ("censys", orjson.loads((CENSYS / "common-osint-model_140.82.121.4_censys_v2.json").read_bytes())),
        ("censys", orjson.loads((CENSYS / "demisto_view_host_response_trimmed.json").read_bytes())),
        ("censys", orjson.loads((CENSYS / "demisto_search_host_response.json").read_bytes())),
        ("censys", orjson.loads((CENSYS / "censys-python_search_hosts.json").read_bytes())),
        ("lzr", lzr_2020),
        ("lzr", lzr),
        ("zmap", zmap | {"zannotate": {"routing": {"asn": 1}}}),
        ("gps", gps),
    ]


EXTRACTORS = {
    "zgrab2": make_extract_zgrab2(None),
    "censys": extract_censys,
    "lzr": extract_lzr,
    "zmap": make_extract_zmap(None),
    "gps": extract_gps,
}
TEMPLATES = _templates()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field path of a record: objects' keys and the first element of lists, at every depth."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list) and value:
        found += _paths(value[0], (*prefix, 0))
    return found


FIELDS = [(index, path) for index, (_, record) in enumerate(TEMPLATES) for path in _paths(record)]


def _replaced(record: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    record = orjson.loads(orjson.dumps(record))
    inner = record
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return record


def check_items(items: list[Any]) -> None:
    """What ingest needs of an extractor's items to store them (the Arrow types of the columns)."""
    types = dict(schema.SERVICES_OPTIONAL)
    for item in items:
        if type(item) is Row:
            pa.array([item.ip], pa.uint32()), pa.array([item.port], pa.uint16())
            pa.array([item.asn], pa.uint32()), pa.array([item.window], pa.int32())
            assert type(item.protocol) is str and type(item.banner) is str
            for name, value in (item.optional or {}).items():
                assert value is None or type(value) is (int if name == "http_status" else str), (name, value)
                pa.array([value], types[name])
        elif type(item) is Filtered:
            assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", item.reason), item
        else:
            assert isinstance(item, RejectedRecord), item
            assert item.reason in REASONS and type(item.detail) is str, item


NASTY = [99999, -1, 2**70, -(2**70), "9" * 5000, "1.2.3.4\x00", "", [], {}, [[]], [{}], True, 1.5]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(NASTY),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3), data=st.data())
def test_random_json_values_in_every_known_field_never_raise(
    fields: list[tuple[int, tuple[Any, ...]]], data: st.DataObject
) -> None:
    fmt, record = TEMPLATES[fields[0][0]]
    for _, path in (f for f in fields if f[0] == fields[0][0]):
        try:
            record = _replaced(record, path, data.draw(json_values))
        except (KeyError, IndexError, TypeError):  # an earlier replacement removed this path
            continue
    check_items(EXTRACTORS[fmt](record))


def test_every_field_of_every_template_with_each_nasty_value() -> None:
    for index, path in FIELDS:
        fmt, record = TEMPLATES[index]
        for value in [*NASTY, None, "x", {"a": ["b"]}, ["a", 1]]:
            check_items(EXTRACTORS[fmt](_replaced(record, path, value)))


def test_odd_types_from_the_issue_do_not_abort_ingest(tmp_path: Path) -> None:
    http = lines(ZGRAB2 / "zgrab2_http-http.json")[0]
    ssh = lines(ZGRAB2 / "zgrab2_ssh-ssh.json")[0]
    odd_http = _replaced(http, ("data", "http", "result", "response", "status_code"), 99999)
    odd_http = _replaced(odd_http, ("data", "http", "result", "response", "headers", "server"), [{"x": 1}])
    odd_http = _replaced(odd_http, ("data", "http", "result", "response", "protocol", "name"), ["HTTP/1.1"])
    odd_ssh = _replaced(ssh, ("data", "ssh", "result", "server_id", "raw"), 20)
    bad_status = _replaced(ssh, ("data", "ssh", "status"), {"nested": "dict"})
    list_ip = _replaced(ssh, ("ip",), ["172.17.0.9"])
    rows = [odd_http | {"ip": "10.0.0.1"}, odd_ssh | {"ip": "10.0.0.2"}, bad_status, list_ip]
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    result = run([path], default_port=8080)
    assert result.counts["services"] == 2
    assert result.counts["filtered_by_reason"] == {"zgrab2_invalid_status": 1}
    assert result.counts["rejected_by_reason"] == {"invalid_ip": 1}
    frame = result.frame.sort_values("ip")
    web, shell = frame.iloc[0], frame.iloc[1]
    assert pd.isna(web.get("http_status"))  # 99999 is no HTTP status: null
    assert pd.isna(web.get("http_server"))  # a list of objects is no Server header
    assert web.banner.startswith("HTTP/1.1 200 OK\r\n")  # the status line is still in the banner
    # raw 20 is no banner: it is rebuilt from server_id.version, software and comment
    assert shell.banner == shell.ssh_banner == "SSH-2.0-OpenSSH_7.2p2 Ubuntu-4ubuntu2.4"
    platform = orjson.loads((CENSYS / "demisto_view_host_response_trimmed.json").read_bytes())
    services = ("result", "resource", "services")
    odd = _replaced(platform, (*services, 2, "endpoints", 0, "http", "status_code"), 99999)
    odd = _replaced(odd, (*services, 3, "transport_protocol"), {"tcp": True})
    odd = _replaced(odd, (*services, 2, "protocol"), ["HTTP"])
    path = tmp_path / "odd-censys.jsonl"
    path.write_bytes(orjson.dumps(odd) + b"\n")
    result = run([path])
    assert result.counts["services"] == 1
    assert result.counts["rejected_by_reason"] == {"invalid_type": 1}
    row = result.frame.iloc[0]
    assert (row.port, row.protocol, row.http_title) == (443, "http", "302 Moved")
    assert pd.isna(row.get("http_status"))  # 99999 is no HTTP status: null


# --- Records without a port: the --default-port hint, once --------------------------------------------

ZMAP_DEFAULT = REAL / "zmap" / "zmap_documentation_default_output.csv"
NOTE = "give --default-port PORT (the port you scanned)"


def test_zmap_default_output_without_a_port_says_how_to_fix_it() -> None:
    assert ZMAP_DEFAULT.read_text().splitlines()[0] == "115.237.116.119"
    result = run([ZMAP_DEFAULT])
    assert result.inputs[0]["format"] == "zmap"
    assert result.counts["services"] == 0
    assert result.counts["rejected_by_reason"] == {"missing_field": 5}
    assert {e["detail"] for e in result.rejects.entries} == {f"sport is missing; {NOTE}"}
    assert no_port_note(result.rejects) == f"gpsgpu: note: 5 records have no port; {NOTE}"
    fixed = run([ZMAP_DEFAULT], default_port=80)
    assert fixed.counts["services"] == 5 and fixed.counts["rejected"] == 0
    assert set(fixed.frame.port.tolist()) == {80}
    assert no_port_note(fixed.rejects) is None


def test_zgrab2_output_without_a_port_says_how_to_fix_it() -> None:
    result = run([ZGRAB2 / n for n in sorted(ZGRAB2_TCP) + list(ZGRAB2_NTP)])
    assert result.counts["services"] == 0
    assert result.counts["rejected_by_reason"] == {"missing_field": 6}
    assert result.counts["filtered_by_reason"] == {"zgrab2_udp": 2}  # UDP is filtered first, with no note
    details = sorted(e["detail"] for e in result.rejects.entries)
    assert details[0] == f"data.amqp091.port is missing; {NOTE}"
    assert all(d.endswith(NOTE) for d in details)
    assert no_port_note(result.rejects) == f"gpsgpu: note: 6 records have no port; {NOTE}"
    one = run([ZGRAB2 / "zgrab2_http-http.json"])
    assert no_port_note(one.rejects) == f"gpsgpu: note: 1 record has no port; {NOTE}"


def test_no_port_note_counts_only_missing_ports() -> None:
    rejects = Rejects()
    rejects.add("x", 1, "invalid_port", "sport: '70000' is not a port in 0..65535", "")
    rejects.add("x", 2, "missing_field", "saddr is missing", "")
    assert no_port_note(rejects) is None
    extract = make_extract_zmap(None)
    assert extract({"saddr": None, "sport": None})[0].detail == "saddr is missing"
    assert extract({"saddr": "1.2.3.4", "sport": ""})[0].detail == f"sport is missing; {NOTE}"
    assert make_extract_zmap(443)({"saddr": "1.2.3.4", "sport": ""})[0].port == 443
    for line in range(3, 5):
        rejects.add("x", line, "missing_field", f"sport is missing; {NOTE}", "")
    assert no_port_note(rejects) == f"gpsgpu: note: 2 records have no port; {NOTE}"
    rejects.counts["missing_field"] += 10  # past MAX_KEPT only the counts grow
    assert no_port_note(rejects) == f"gpsgpu: note: at least 2 records have no port; {NOTE}"


def test_ingest_command_says_the_note_once_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpsgpu.errors import InputError
    from gpsgpu.pipelines.ingest import run_ingest

    with pytest.raises(InputError):
        run_ingest([str(ZMAP_DEFAULT)], tmp_path / "s.parquet", IngestConfig(backend="cpu"))
    err = capsys.readouterr().err.splitlines()
    assert err.count(f"gpsgpu: note: 5 records have no port; {NOTE}") == 1


def test_learn_and_predict_take_default_port_for_records_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``learn`` and ``predict`` read scan records themselves, so they take ``--default-port`` as
    ``ingest`` does; without it their error says to give it. The priors records are ingested once,
    whatever the model's mode."""
    import json

    from gpsgpu import cli
    from gpsgpu.io import ingest as ingest_module
    from gpsgpu.io.parquet import write_services
    from tests.gps_data import make_services

    def main(*args: str) -> int:
        try:
            cli.main(["-q", *args])
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    assert main("learn", str(ZMAP_DEFAULT), "-o", str(tmp_path / "zmodel"), "--default-port", "80") == 0
    meta = json.loads((tmp_path / "zmodel" / "metadata.json").read_text())
    assert meta["counts"]["n_services"] == 5 and meta["config"]["default_port"] == 80
    capsys.readouterr()
    assert main("learn", str(ZMAP_DEFAULT), "-o", str(tmp_path / "none")) == 3  # an input error
    err = capsys.readouterr().err
    assert "5 of 5 records rejected; records without a port: give --default-port PORT" in err
    assert not (tmp_path / "none").exists()
    seed = tmp_path / "seed.parquet"
    write_services(make_services(300, seed=4), seed)
    calls: list[object] = []
    real = ingest_module.ingest

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "ingest", counted)
    for mode in ("compatible", "improved"):
        model = tmp_path / f"model-{mode}"
        assert main("learn", str(seed), "-o", str(model), "--mode", mode) == 0
        calls.clear()
        out = tmp_path / f"pred-{mode}"
        assert main("predict", str(model), str(ZMAP_DEFAULT), "-o", str(out), "--default-port", "80") == 0
        assert len(calls) == 1
        meta = json.loads((out / "metadata.json").read_text())
        assert meta["counts"]["n_priors_services"] == 5 and meta["config"]["default_port"] == 80

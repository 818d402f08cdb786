"""The ``extended`` feature preset: per-protocol parsing, structured fields first, a superset of
``gps2022``, deterministic keys, and a learn/predict run with it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
import xxhash

from gpsgpu import samples, schema
from gpsgpu.config import IngestConfig, LearnConfig, PredictConfig, SimulateConfig
from gpsgpu.errors import UsageError
from gpsgpu.features import PRESETS, extract_features, feature_arrays_of_table, feature_columns
from gpsgpu.features.extended import MAX_HTTP_HEADERS, certificate_names
from gpsgpu.io.ingest import ingest
from gpsgpu.io.model import read_model
from gpsgpu.sim.banners import certificate, tls_flight

IP = 0x5DB80D22  # 93.184.13.34
X16 = "5db80000"


def services(rows: list[dict]) -> pd.DataFrame:
    base = {"ip": IP, "asn": 13335, "protocol": "", "window": 65535, "banner": ""}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    frame = frame.astype({"ip": np.uint32, "port": np.uint16, "asn": np.uint32, "window": np.int32})
    for name in schema.OPTIONAL_COLUMNS:
        if name in frame.columns:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def by_port(frame: pd.DataFrame, preset: str = "extended") -> dict[int, set[str]]:
    table = extract_features(frame, preset=preset)
    names = dict(zip(table.dictionary["fid"].tolist(), table.dictionary["feature"].tolist(), strict=True))
    out: dict[int, set[str]] = {}
    for port, fid in zip(table.long["port"].tolist(), table.long["fid"].tolist(), strict=True):
        out.setdefault(int(port), set()).add(names[int(fid)])
    return out


def app(features: set[str]) -> set[str]:
    """The application features (no gps2022 data features, crosses or network features)."""
    gps = ("http line: ", "fingerprint: ", "window: ", "ssh banner: ", "tls cert: ", "tls oid: ", "asn: ")
    return {
        f for f in features if not f.startswith(gps) and not f.startswith(("16:", "asn:", "s2", "s1", "L4"))
    }


def one(banner: str, port: int = 1, protocol: str = "", **columns: object) -> set[str]:
    return app(by_port(services([{"port": port, "protocol": protocol, "banner": banner, **columns}]))[port])


# --- per protocol, on real-shaped banners ----------------------------------------------------------

APACHE = (
    "HTTP/1.1 200 OK\r\n"
    "Date: Mon, 23 Nov 2026 15:46:15 GMT\r\n"
    "Server: Apache/2.4.41 (Ubuntu)\r\n"
    'ETag: "2aa6-5f1e7a9c3b1c0"\r\n'
    "Accept-Ranges: bytes\r\n"
    "Content-Length: 10918\r\n"
    "Vary: Accept-Encoding\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN">\n<html>\n  <head>\n'
    "    <title>Apache2 Ubuntu Default Page:\n   It works</title>\n"
)


def test_http_title_server_body_hash_and_each_header() -> None:
    got = one(APACHE, port=80, protocol="http")
    body = APACHE.split("\r\n\r\n", 1)[1]
    assert got == {
        "http title: Apache2 Ubuntu Default Page: It works",
        "http server: Apache/2.4.41 (Ubuntu)",
        f"http body sha256: {hashlib.sha256(body.encode()).hexdigest()}",
        "http header: date",  # per-connection values: the name only
        "http header: server: Apache/2.4.41 (Ubuntu)",
        "http header: etag",
        "http header: accept-ranges: bytes",
        "http header: content-length: 10918",
        "http header: vary: Accept-Encoding",
        "http header: content-type: text/html",
    }


def test_http_headers_are_capped_per_service() -> None:
    head = "".join(f"X-H{k}: v\r\n" for k in range(MAX_HTTP_HEADERS + 9))
    got = one(f"HTTP/1.0 204 No Content\r\n{head}\r\n", port=8080)
    headers = sorted(f for f in got if f.startswith("http header: "))
    assert len(headers) == MAX_HTTP_HEADERS
    assert "http header: x-h0: v" in headers and f"http header: x-h{MAX_HTTP_HEADERS}: v" not in headers
    assert not any(f.startswith("http body sha256") for f in got)  # no body


def test_cwmp_endpoint_by_port_and_by_server() -> None:
    huawei = (
        "HTTP/1.1 401 Unauthorized\r\nServer: gSOAP/2.8\r\nContent-Type: text/xml; charset=utf-8\r\n"
        'WWW-Authenticate: Digest realm="HuaweiHomeGateway", nonce="x", qop="auth"\r\n\r\n<html>'
    )
    got = one(huawei, port=7547, protocol="http")
    assert {"cwmp server: gSOAP/2.8", "cwmp header: server: gSOAP/2.8"} <= got
    assert f"cwmp body sha256: {hashlib.sha256(b'<html>').hexdigest()}" in got
    assert not any(f.startswith("http ") for f in got)
    # The simulated CPE's server names CWMP; any port.
    sim = one(
        "HTTP/1.1 401 Unauthorized\r\nServer: Zyxel CWMP/1.2.3\r\nContent-Length: 0\r\n\r\n", port=30005
    )
    assert "cwmp server: Zyxel CWMP/1.2.3" in sim


def test_ssh_software() -> None:
    assert one("SSH-2.0-OpenSSH_7.4\r\n", 22, "ssh") == {"ssh software: OpenSSH_7.4"}
    assert one("SSH-1.99-Cisco-1.25\n", 2222) == {"ssh software: Cisco-1.25"}
    assert one("SSH-2.0-dropbear_2019.78", 22, "ssh") == {"ssh software: dropbear_2019.78"}


@pytest.mark.parametrize(
    ("banner", "protocol", "expected"),
    [
        (
            "220 mx1.example.org ESMTP Exim 4.96 Mon, 23 Nov 2026 15:46:15 +0000\r\n",
            "smtp",
            "smtp banner: 220 <host> ESMTP Exim 4.96 Mon, 23 Nov 2026 <time> +0000",
        ),
        (
            "220-mail.example.com ESMTP Postfix (Ubuntu)\r\n",
            "",
            "smtp banner: 220-<host> ESMTP Postfix (Ubuntu)",
        ),
        ("220 (vsFTPd 3.0.3)\r\n", "ftp", "ftp banner: 220 (vsFTPd 3.0.3)"),
        (
            "220 ProFTPD Server (Debian) [::ffff:192.0.2.7]\r\n",
            "",
            "ftp banner: 220 ProFTPD Server (Debian) [::ffff:<ip>]",
        ),
        ("220 FRITZ!Box7590 FTP server ready.\r\n", "ftp", "ftp banner: 220 FRITZ!Box7590 FTP server ready."),
        (
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE AUTH=PLAIN] Dovecot ready.\r\n"
            "* BYE\r\n",
            "imap",
            "imap banner: * OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE AUTH=PLAIN] "
            "Dovecot ready.",
        ),
        ("+OK Dovecot (Ubuntu) ready.\r\n", "pop3", "pop3 banner: +OK Dovecot (Ubuntu) ready."),
        (
            "+OK POP3 server ready <12345.1700000000@mail.example.com>\r\n",
            "",
            "pop3 banner: +OK POP3 server ready <<n>.<n>@<host>>",
        ),
        ("\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27", "telnet", None),
        ("\xff\xfb\x01\xff\xfb\x03\r\nRT-AC68U login: ", "telnet", "telnet banner: RT-AC68U login:"),
        (
            "\xff\xfb\x01\xff\xfb\x03\xff\xfd\x18\r\n\r\nUser Access Verification\r\n\r\nUsername: ",
            "",
            "telnet banner: User Access Verification",
        ),
    ],
)
def test_greetings_first_line_masked(banner: str, protocol: str, expected: str | None) -> None:
    assert one(banner, 25, protocol) == ({expected} if expected else set())


def test_tls_certificate_hash_subject_and_organization() -> None:
    subject = [("C", "US"), ("ST", "California"), ("O", "Cisco Systems, Inc."), ("CN", "00:11:22:33:44:55")]
    der = certificate(subject, [("CN", "Cisco CA")], seed=5)
    assert certificate_names(der) == (
        "C=US, ST=California, O=Cisco Systems, Inc., CN=00:11:22:33:44:55",
        "Cisco Systems, Inc.",
        "CN=Cisco CA",
    )
    assert certificate_names(b"\x30\x03\x02\x01\x00") == (None, None, None)  # not a certificate
    expected = {
        f"tls cert sha256: {hashlib.sha256(der).hexdigest()}",
        "tls subject: C=US, ST=California, O=Cisco Systems, Inc., CN=00:11:22:33:44:55",
        "tls org: Cisco Systems, Inc.",
        "tls issuer: CN=Cisco CA",
    }
    assert one(tls_flight(der), 443, "tls") == expected  # a flight as hex (LZR, simulation)
    raw = samples.tls_records(der).decode("latin-1")
    assert one(raw, 465, "smtp") == expected  # raw bytes, and not a greeting although protocol smtp
    assert one("", 443, "tls", tls_cert=der.hex()) == expected  # the tls_cert column
    # Structured columns win field by field; the others still come from the certificate.
    given = one(tls_flight(der), 443, "tls", tls_subject="CN=given", tls_org=None, tls_cert_sha256="ab" * 32)
    assert given == {
        "tls subject: CN=given",
        f"tls cert sha256: {'ab' * 32}",
        "tls org: Cisco Systems, Inc.",
        "tls issuer: CN=Cisco CA",
    }


def test_binary_protocols() -> None:
    mysql = b"J\x00\x00\x00\n5.7.33-0ubuntu0.18.04.1\x00\x08\x00\x00\x00abcdefgh\x00\xff\xf7\x08\x02\x00"
    assert one(mysql.decode("latin-1"), 3306, "mysql") == {"mysql version: 5.7.33-0ubuntu0.18.04.1"}
    assert one(mysql.hex(), 3306, "mysql") == {"mysql version: 5.7.33-0ubuntu0.18.04.1"}  # hex form
    assert one("VERSION 1.6.9\r\n", 11211) == {"memcached version: 1.6.9"}
    stats = "STAT pid 1\r\nSTAT uptime 2\r\nSTAT time 3\r\nSTAT version 1.4.15\r\nEND\r\n"
    assert one(stats, 11211) == {"memcached version: 1.4.15"}
    # TDS PRELOGIN response: VERSION 15.0.2000 (option 0 at offset 11, 6 bytes), ENCRYPTION.
    prelogin = bytes.fromhex("00000b00060100110001ff0f0007d0000002")
    tds = bytes([4, 1]) + (8 + len(prelogin)).to_bytes(2, "big") + b"\x00\x00\x01\x00" + prelogin
    assert one(tds.decode("latin-1"), 1433, "mssql") == {"mssql version: 15.0.2000"}
    # RFB version, security result OK, ServerInit with the desktop name.
    init = (
        (1024).to_bytes(2, "big")
        + (768).to_bytes(2, "big")
        + bytes(16)
        + (11).to_bytes(4, "big")
        + b"nas-desktop"
    )
    vnc = b"RFB 003.008\n" + b"\x00\x00\x00\x00" + init
    assert one(vnc.decode("latin-1"), 5900, "vnc") == {"vnc desktop: nas-desktop"}
    assert one("RFB 003.008\n", 5900, "vnc") == set()  # no ServerInit: no name
    # PPTP Start-Control-Connection-Reply: hostname at 28, vendor at 92 (64 bytes each).
    reply = bytearray(156)
    reply[0:2], reply[2:4], reply[4:8] = (156).to_bytes(2, "big"), b"\x00\x01", bytes.fromhex("1a2b3c4d")
    reply[28:34], reply[92:100] = b"router", b"MikroTik"
    assert one(bytes(reply).decode("latin-1"), 1723, "pptp") == {"pptp vendor: MikroTik"}
    assert one("PPTP DrayTek 3.9.1", 1723, "pptp") == {"pptp vendor: DrayTek 3.9.1"}
    ipmi = bytes.fromhex("0600ff0700000000000000000010811c6320003800010180040200000000")
    assert one(ipmi.decode("latin-1"), 623, "ipmi") == {f"ipmi banner: {ipmi[4:].hex()}"}


def test_simulated_banners_of_every_style_parse() -> None:
    from gpsgpu.sim.banners import STYLES, Context
    from gpsgpu.sim.catalog import FAMILIES

    rows = []
    for f, family in enumerate(FAMILIES):
        for s, slot in enumerate(family.slots):
            rows.append(
                {
                    "port": 1 + len(rows),
                    "protocol": slot.protocol,
                    "banner": STYLES[slot.banner](Context(f, s, 3, 77)),
                }
            )
    got = set().union(*(app(v) for v in by_port(services(rows)).values()))
    prefixes = {f.split(":", 1)[0] for f in got}
    assert {
        "http title",
        "http server",
        "cwmp server",
        "ssh software",
        "smtp banner",
        "ftp banner",
        "imap banner",
        "pop3 banner",
        "telnet banner",
        "mysql version",
        "pptp vendor",
        "tls cert sha256",
        "tls org",
        "tls issuer",
    } <= prefixes


# --- structured fields win -------------------------------------------------------------------------


def test_structured_columns_win_over_the_banner_field_by_field() -> None:
    page = "HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Raw: 1\r\n\r\n<title>From the banner</title>"
    frame = services(
        [
            {
                "port": 80,
                "banner": page,
                "http_title": "Structured",
                "http_server": None,
                "http_headers": "server: nginx/1.25\nx-given: 2",
                "app_fields": None,
            },
            {
                "port": 81,
                "banner": page,
                "http_title": None,
                "http_server": None,
                "http_headers": None,
                "app_fields": None,
            },
            {
                "port": 3306,
                "protocol": "mysql",
                "banner": "J\x00\x00\x00\n8.0.36\x00",
                "http_title": None,
                "http_server": None,
                "http_headers": None,
                "app_fields": "mysql version: 9.9.9\nvnc desktop: x",
            },
        ]
    )
    got = {port: app(f) for port, f in by_port(frame).items()}
    assert "http title: Structured" in got[80] and "http title: From the banner" not in got[80]
    assert "http server: nginx" in got[80]  # no structured server: parsed
    assert {f for f in got[80] if "header" in f} == {
        "http header: server: nginx/1.25",
        "http header: x-given: 2",
    }
    assert "http title: From the banner" in got[81] and "http header: x-raw: 1" in got[81]
    assert got[3306] == {"mysql version: 9.9.9", "vnc desktop: x"}


def test_zgrab2_and_censys_records_give_structured_features(tmp_path: Path) -> None:
    hosts = samples.sample_services(40, seed=4)
    records = list(samples.zgrab2_records(hosts))
    mysql = {
        "status": "success",
        "protocol": "mysql",
        "port": 3306,
        "result": {"protocol_version": 10, "server_version": "8.0.36-0ubuntu0.22.04.1"},
    }
    records.append({"ip": "203.0.113.9", "data": {"mysql": mysql}})
    (tmp_path / "z.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    censys = {
        "ip": "198.51.100.4",
        "autonomous_system": {"asn": 64500},
        "services": [
            {
                "port": 5900,
                "service_name": "VNC",
                "transport_protocol": "TCP",
                "banner": "RFB 003.008",
                "vnc": {"desktop_name": "office-pc", "version": "3.8"},
            },
            {
                "port": 1723,
                "service_name": "PPTP",
                "transport_protocol": "TCP",
                "pptp": {"vendor": "Linux", "hostname": "vpn"},
            },
        ],
    }
    (tmp_path / "c.jsonl").write_bytes(orjson.dumps(censys) + b"\n")
    features = set()
    for name, fmt in (("z.jsonl", "zgrab2"), ("c.jsonl", "censys")):
        frame = ingest([str(tmp_path / name)], IngestConfig(format=fmt, backend="cpu")).frame
        assert "app_fields" in frame.columns
        features |= set().union(*by_port(frame).values())
    tls = next(s for s in hosts if s.tls_der is not None)
    assert {
        "http title: Welcome",
        "tls org: Example Devices",
        "tls subject: CN=device.example.net, O=Example Devices",
        "tls issuer: CN=Example CA",
        f"tls cert sha256: {hashlib.sha256(tls.tls_der).hexdigest()}",
        "mysql version: 8.0.36-0ubuntu0.22.04.1",
        "vnc desktop: office-pc",
        "pptp vendor: Linux",
    } <= features
    assert any(f.startswith("ssh hostkey: ") for f in features)


# --- properties ------------------------------------------------------------------------------------


def sample_frame() -> pd.DataFrame:
    rows = [
        {
            "ip": int.from_bytes(bytes(map(int, s.ip.split("."))), "big"),
            "port": s.port,
            "asn": s.asn,
            "protocol": s.protocol,
            "window": s.window,
            "banner": s.banner,
        }
        for s in samples.sample_services(150, seed=9)
    ]
    return services(rows)


@pytest.mark.parametrize("use_asn", [True, False])
def test_a_superset_of_gps2022_with_crosses_and_prefixes(use_asn: bool) -> None:
    frame = sample_frame()
    gps = extract_features(frame, use_asn=use_asn)
    ext = extract_features(frame, use_asn=use_asn, preset="extended")

    def triples(table: object) -> set[tuple[int, int, str]]:
        names = dict(zip(table.dictionary["fid"], table.dictionary["feature"], strict=True))  # type: ignore[attr-defined]
        long = table.long  # type: ignore[attr-defined]
        return {
            (int(i), int(p), names[f]) for i, p, f in zip(long["ip"], long["port"], long["fid"], strict=True)
        }

    small, big = triples(gps), triples(ext)
    assert small < big
    added = {f for _, _, f in big - small}
    assert any(f.startswith("s23: ") for f in added) and any(f.startswith("s24: ") for f in added)
    assert any(f.startswith("16:http server: nginx/1.18.0-") for f in added)
    assert any(f.startswith("asn:http server: ") for f in added) == use_asn
    # Keys are XXH64 of the strings, seed 0.
    for fkey, feature in zip(
        ext.dictionary["fkey"].tolist(), ext.dictionary["feature"].tolist(), strict=True
    ):
        assert fkey == xxhash.xxh64_intdigest(feature.encode(), 0)


def test_keys_are_deterministic_across_chunks_threads_and_row_order() -> None:
    frame = sample_frame()
    table = schema.frame_to_arrow(frame[feature_columns(frame.columns, "extended")])

    def pairs(t: pa.Table, order: np.ndarray | None = None, **kwargs: object) -> set[tuple[int, int]]:
        arrays = feature_arrays_of_table(t, preset="extended", **kwargs)  # type: ignore[arg-type]
        rows = arrays.row if order is None else order[arrays.row]
        return set(zip(rows.tolist(), arrays.fkeys[arrays.fid].tolist(), strict=True))

    whole = pairs(table)
    assert pairs(table, chunk_rows=37, workers=3) == whole
    order = np.random.default_rng(1).permutation(table.num_rows)
    assert pairs(table.take(pa.array(order)), order) == whole


def test_presets_and_columns() -> None:
    assert PRESETS == ("gps2022", "extended")
    assert (
        feature_columns(["ip", "port", "tls_cert", "http_title", "app_fields"], "gps2022")[-1] == "tls_cert"
    )
    assert feature_columns(["ip", "http_title", "app_fields"], "extended")[-2:] == [
        "http_title",
        "app_fields",
    ]
    with pytest.raises(UsageError):
        extract_features(sample_frame(), preset="bogus")


# --- the pipeline ----------------------------------------------------------------------------------


def test_learn_and_predict_with_the_extended_preset(tmp_path: Path) -> None:
    from gpsgpu.pipelines.learn import run_learn
    from gpsgpu.pipelines.predict import run_predict
    from gpsgpu.pipelines.simulate import run_simulate

    net = tmp_path / "net"
    run_simulate(
        net, SimulateConfig(hosts=20_000, seed_fraction=0.05, seed=3, backend="cpu"), progress=lambda _: None
    )
    seed = [str(net / "seed.parquet")]
    run_learn(seed, tmp_path / "ext", LearnConfig(backend="cpu", preset="extended"))
    run_learn(seed, tmp_path / "gps", LearnConfig(backend="cpu", preset="gps2022"))
    model = read_model(tmp_path / "ext")
    assert model.params["preset"] == "extended"
    assert len(model.rules) > 0
    meta = {p: json.loads((tmp_path / p / "metadata.json").read_text()) for p in ("ext", "gps")}
    assert meta["ext"]["counts"]["n_features"] > meta["gps"]["counts"]["n_features"]
    assert read_model(tmp_path / "gps").params["preset"] == "gps2022"
    # Predict reads the preset from the model: the priors get the features the rules name.
    run_predict(tmp_path / "ext", seed, tmp_path / "pred", PredictConfig(backend="cpu"))
    assert json.loads((tmp_path / "pred" / "metadata.json").read_text())["counts"]["n_priors_services"] > 0


def test_predict_matches_rules_on_extended_features() -> None:
    from gpsgpu.predict import predict_services

    feature = "http server: nginx/1.18.0"
    rules = pd.DataFrame(
        {
            schema.NEEDED_P: np.array([80], np.uint16),
            schema.FKEY: np.array([xxhash.xxh64_intdigest(feature.encode(), 0)], np.uint64),
            schema.P: np.array([8443], np.uint16),
            schema.SCORE: np.array([0.5]),
        }
    )
    priors = services(
        [{"port": 80, "protocol": "http", "banner": APACHE.replace("Apache/2.4.41 (Ubuntu)", "nginx/1.18.0")}]
    )
    empty_plan = pd.DataFrame(
        {schema.NEEDED_P: np.zeros(0, np.uint16), schema.PREFIX: np.zeros(0, np.uint32)}
    )
    empty_seed = pd.DataFrame({schema.IP: np.zeros(0, np.uint32), schema.PORT: np.zeros(0, np.uint16)})
    kwargs = {"plan": empty_plan, "seed": empty_seed, "step": 16}
    got = predict_services(priors, rules, preset="extended", **kwargs)
    assert got[[schema.IP, schema.PORT]].values.tolist() == [[IP, 8443]]
    assert len(predict_services(priors, rules, **kwargs)) == 0  # gps2022 has no such feature

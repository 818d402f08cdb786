"""The gps2022 feature preset against the reference's definitions (GPS_REFERENCE.md §2)."""

from __future__ import annotations

import numpy as np
import oracle_gps
import pandas as pd
import pytest
import xxhash
from gps_data import make_services, tls_flight

from gpsgpu.backend import Backend, to_backend, to_numpy
from gpsgpu.features import extract_features
from gpsgpu.features.tls import certificate_hex


def services(rows: list[dict]) -> pd.DataFrame:
    base = {"asn": 0, "protocol": "http", "window": 0, "banner": ""}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    out = frame.astype({"ip": np.uint32, "port": np.uint16, "asn": np.uint32, "window": np.int32})
    if "tls_cert" in out.columns:
        out["tls_cert"] = out["tls_cert"].astype("string")
    return out


def feature_set(frame: pd.DataFrame, **kwargs: object) -> set[tuple[int, int, str]]:
    table = extract_features(frame, **kwargs)
    long = table.long if not hasattr(table.long, "to_pandas") else table.long.to_pandas()
    dictionary = (
        table.dictionary if not hasattr(table.dictionary, "to_pandas") else table.dictionary.to_pandas()
    )
    names = dict(zip(dictionary["fid"].tolist(), dictionary["feature"].tolist(), strict=True))
    return {
        (int(ip), int(port), names[int(fid)])
        for ip, port, fid in zip(
            long["ip"].tolist(), long["port"].tolist(), long["fid"].tolist(), strict=True
        )
    }


def strings_of(frame: pd.DataFrame, **kwargs: object) -> set[str]:
    return {f for _, _, f in feature_set(frame, **kwargs)}


def test_http_lines_split_on_newline_keeping_carriage_returns() -> None:
    got = strings_of(
        services([{"ip": 0x01020304, "port": 80, "banner": "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"}])
    )
    lines = {f for f in got if f.startswith("http line: ")}
    assert lines == {"http line: HTTP/1.1 200 OK\r", "http line: Server: x\r", "http line: \r", "http line: "}


def test_empty_banner_is_one_empty_line_like_bigquery_split() -> None:
    got = strings_of(services([{"ip": 1, "port": 1, "banner": ""}]))
    assert "http line: " in got


def test_network_and_fixed_features() -> None:
    got = strings_of(
        services([{"ip": 0x0102FF04, "port": 22, "asn": 13335, "window": 65535, "protocol": "ssh"}])
    )
    assert {"s16: 01020000", "s17: 01028000", "s20: 0102f000", "s22: 0102fc00", "L4", "asn: 13335"} <= got
    assert {"fingerprint: ssh", "window: 65535", "ssh banner: "} <= got
    assert "16:fingerprint: ssh-01020000" in got
    assert "asn:window: 65535-asn: 13335" in got


def test_no_asn_drops_asn_features_and_crosses() -> None:
    frame = services([{"ip": 0x01020304, "port": 80, "asn": 7922, "banner": "x"}])
    got = strings_of(frame, use_asn=False)
    assert not any(f.startswith(("asn: ", "asn:")) for f in got)
    assert "16:http line: x-01020000" in got


def test_unknown_asn_zero_gives_no_asn_features() -> None:
    got = strings_of(services([{"ip": 5, "port": 80, "asn": 0, "banner": "x"}]))
    assert not any(f.startswith("asn") for f in got)


def test_fkey_is_xxh64_of_the_utf8_string() -> None:
    frame = services([{"ip": 9, "port": 443, "banner": "caf\u00e9\nna\u00efve \u2603", "asn": 1}])
    table = extract_features(frame)
    for fkey, feature in zip(
        table.dictionary["fkey"].tolist(), table.dictionary["feature"].tolist(), strict=True
    ):
        assert fkey == xxhash.xxh64_intdigest(feature.encode("utf-8"), 0)


def test_repeated_services_merge_as_a_union() -> None:
    frame = services(
        [
            {"ip": 7, "port": 80, "banner": "a\nb"},
            {"ip": 7, "port": 80, "banner": "a\nc"},
            {"ip": 7, "port": 80, "banner": "a\nc"},
        ]
    )
    table = extract_features(frame)
    assert not table.long.duplicated(["ip", "port", "fid"]).any()
    lines = {f for f in strings_of(frame) if f.startswith("http line: ")}
    assert lines == {"http line: a", "http line: b", "http line: c"}


CERT = "3082" + "0a0b0c0d0e0f" + "30" + "11223344556677" + "30" + "aabb" + "3030" + "ffeeddccbbaa99"


@pytest.mark.parametrize(
    "banner",
    [
        tls_flight(CERT).hex(),
        tls_flight(CERT).hex().upper(),
        tls_flight(CERT, split=True).hex(),
        tls_flight(CERT).decode("latin-1"),
    ],
    ids=["hex", "HEX", "split-records", "raw-bytes"],
)
def test_tls_cert_from_banner(banner: str) -> None:
    assert certificate_hex(banner) == CERT
    got = strings_of(services([{"ip": 3, "port": 443, "protocol": "tls", "banner": banner}]))
    assert f"tls cert: {CERT}" in got
    expected = {f"tls oid: {piece}" for piece in CERT.split("30") if len(piece) > 7}
    assert {f for f in got if f.startswith("tls oid: ")} == expected
    assert expected  # the fixture has pieces on both sides of the length cut


def test_tls_without_certificate_and_column_precedence() -> None:
    alert = "\x15\x03\x03\x00\x02\x02\x28"
    assert certificate_hex(alert) is None
    assert certificate_hex(tls_flight(CERT).hex()[:-40]) is None  # truncated inside the leaf
    frame = services(
        [
            {"ip": 3, "port": 443, "protocol": "tls", "banner": alert, "tls_cert": "30aabbccddeeff00"},
            {"ip": 4, "port": 443, "protocol": "tls", "banner": alert, "tls_cert": None},
            {"ip": 5, "port": 80, "protocol": "http", "banner": tls_flight(CERT).hex(), "tls_cert": None},
        ]
    )
    got = feature_set(frame)
    assert (3, 443, "tls cert: 30aabbccddeeff00") in got
    assert not any(f.startswith("tls") for ip, _, f in got if ip in (4, 5))


@pytest.mark.parametrize("use_asn", [True, False], ids=["asn", "no-asn"])
def test_features_equal_the_sql_oracle(use_asn: bool) -> None:
    frame = make_services(250, seed=11)
    con = oracle_gps.connect()
    oracle_gps._services_view(con, "svc", frame)
    con.execute(oracle_gps._features_sql("svc", "feat", use_asn))
    expected = {(int(ip), int(p), f) for ip, p, f in con.execute("SELECT ip, p, f FROM feat").fetchall()}
    assert any(f.startswith("tls oid: ") for _, _, f in expected)
    assert feature_set(frame, use_asn=use_asn) == expected


def test_features_on_every_backend(backend: Backend) -> None:
    frame = make_services(60, seed=2)
    on_backend = to_backend(frame, backend)
    table = extract_features(on_backend)
    cpu = extract_features(frame)
    assert np.array_equal(np.sort(to_numpy(table.long["fkey"])), np.sort(cpu.long["fkey"].to_numpy()))


@pytest.mark.gpu
def test_cudf_xxhash64_equals_xxhash() -> None:
    import pyarrow as pa

    from gpsgpu.ops import cpu, gpu

    strings = ["", "a", "L4", "http line: \r", "caf\u00e9", "x" * 31, "y" * 32, "z" * 33, "w" * 1000]
    strings += [f"asn:http line: Server: nginx/{i}-asn: {i}" for i in range(200)]
    expected = np.array([xxhash.xxh64_intdigest(s.encode(), 0) for s in strings], dtype=np.uint64)
    assert np.array_equal(cpu.xxh64_strings(pa.array(strings)), expected)
    assert np.array_equal(to_numpy(gpu.xxh64_strings(strings)), expected)


def test_chunked_features_merge_into_the_same_dictionary() -> None:
    from gpsgpu import schema
    from gpsgpu.features import feature_arrays

    frame = make_services(300, seed=4)
    table = schema.frame_to_arrow(frame[["ip", "protocol", "window", "banner", "asn", "tls_cert"]])
    args = (
        np.asarray(table["ip"]).astype(np.uint32),
        table["protocol"].combine_chunks(),
        np.asarray(table["window"]),
        table["banner"].combine_chunks(),
        np.asarray(table["asn"]),
        table["tls_cert"].combine_chunks(),
    )

    def triples(arrays: object) -> set[tuple[int, str]]:
        names = arrays.strings.materialize().to_pylist()
        assert len(set(names)) == len(names) == arrays.fkeys.size
        return {(int(r), names[f]) for r, f in zip(arrays.row, arrays.fid, strict=True)}

    whole = feature_arrays(*args)
    for workers in (1, 3):
        assert triples(feature_arrays(*args, chunk_rows=97, workers=workers)) == triples(whole)

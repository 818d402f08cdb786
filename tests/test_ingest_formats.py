"""Every reader, on real-shaped samples of each format written by the tests."""

from __future__ import annotations

import csv
import gzip
import io
import ipaddress
import json
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from gpsgpu import samples, schema
from gpsgpu.backend import Backend
from gpsgpu.config import IngestConfig
from gpsgpu.errors import InputError
from gpsgpu.io.ingest import detect_format, ingest
from gpsgpu.io.parquet import read_services, write_services

SERVICES = samples.sample_services(60, seed=3)


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def expected_keys(services: list[samples.SampleService]) -> set[tuple[int, int]]:
    return {(ip_int(s.ip), s.port) for s in services}


def write_jsonl(path: Path, records: object) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))  # type: ignore[attr-defined]
    return path


def run(paths: list[Path], backend: Backend = Backend.CPU, **options: object) -> object:
    return ingest([str(p) for p in paths], IngestConfig(backend=backend.value, **options))  # type: ignore[arg-type]


def as_pandas(frame: object) -> pd.DataFrame:
    return frame.to_pandas() if hasattr(frame, "to_arrow") and not isinstance(frame, pd.DataFrame) else frame  # type: ignore[return-value]


def test_gps_jsonl(tmp_path: Path, backend: Backend) -> None:
    path = write_jsonl(tmp_path / "seed.jsonl", samples.gps_records(SERVICES))
    result = run([path], backend)
    frame = as_pandas(result.frame)
    assert result.backend is backend
    assert set(zip(frame.ip.tolist(), frame.port.tolist(), strict=True)) == expected_keys(SERVICES)
    assert result.counts["rejected"] == 0
    one = SERVICES[0]
    row = frame[(frame.ip == ip_int(one.ip)) & (frame.port == one.port)].iloc[0]
    assert (row.asn, row.protocol, row.window, row.banner) == (one.asn, one.protocol, one.window, one.banner)
    assert frame.dtypes[schema.IP] == "uint32" and frame.dtypes[schema.PORT] == "uint16"
    assert frame[[schema.IP, schema.PORT]].equals(
        frame.sort_values([schema.IP, schema.PORT])[[schema.IP, schema.PORT]]
    )


def test_gps_csv_with_multiline_banners(tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ip", "p", "asn", "data", "fingerprint", "w"])
        writer.writeheader()
        writer.writerows(samples.gps_records(SERVICES))
    result = run([path])
    assert result.inputs[0]["format"] == "gps" and result.inputs[0]["container"] == "csv"
    http = next(s for s in SERVICES if "\r\n" in s.banner)
    frame = result.frame
    got = frame[(frame.ip == ip_int(http.ip)) & (frame.port == http.port)].banner.iloc[0]
    assert got == http.banner


def test_gps_parquet_as_bigquery_exports_it(tmp_path: Path) -> None:
    records = list(samples.gps_records(SERVICES))
    for r in records:  # BigQuery exports INT64 as strings in JSON; Parquet keeps ints
        r["asn"] = int(r["asn"])
    path = tmp_path / "seed.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    result = run([path])
    assert result.inputs[0]["format"] == "gps"
    assert set(zip(result.frame.ip.tolist(), result.frame.port.tolist(), strict=True)) == expected_keys(
        SERVICES
    )


def test_bigquery_json_integers_as_strings(tmp_path: Path) -> None:
    records = [
        {**r, "p": str(r["p"]), "asn": str(r["asn"]), "w": str(r["w"])} for r in samples.gps_records(SERVICES)
    ]
    result = run([write_jsonl(tmp_path / "bq.json", records)])
    assert result.counts["rejected"] == 0 and len(result.frame) == len(expected_keys(SERVICES))


def test_lzr_keeps_only_real_services(tmp_path: Path, backend: Backend) -> None:
    records = list(samples.lzr_records(SERVICES))
    path = write_jsonl(tmp_path / "lzr.jsonl", records)
    result = run([path], backend)
    assert result.inputs[0]["format"] == "lzr"
    frame = as_pandas(result.frame)
    assert set(zip(frame.ip.tolist(), frame.port.tolist(), strict=True)) == expected_keys(SERVICES)
    n_rst = sum(1 for r in records if r["RST"])
    n_zero = sum(1 for r in records if r["window"] == 0)
    assert result.counts["filtered_by_reason"] == {"lzr_rst": n_rst, "lzr_zero_window": n_zero}
    assert result.counts["rejected"] == 0
    assert frame.asn.min() > 0  # from zannotate.routing.asn


def test_lzr_without_zannotate_has_unknown_asn(tmp_path: Path) -> None:
    records = [{k: v for k, v in r.items() if k != "zannotate"} for r in samples.lzr_records(SERVICES[:5])]
    result = run([write_jsonl(tmp_path / "lzr.jsonl", records)])
    assert (result.frame.asn == 0).all()


def test_zgrab2_structured_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "zgrab2.jsonl", samples.zgrab2_records(SERVICES))
    result = run([path])
    assert result.inputs[0]["format"] == "zgrab2"
    frame = result.frame
    assert set(zip(frame.ip.tolist(), frame.port.tolist(), strict=True)) == expected_keys(SERVICES)
    assert result.counts["filtered_by_reason"] == {"zgrab2_connection-timeout": 1}
    tls = next(s for s in SERVICES if s.tls_der is not None)
    row = frame[(frame.ip == ip_int(tls.ip)) & (frame.port == tls.port)].iloc[0]
    assert row.tls_cert == tls.tls_der.hex()
    assert row.tls_org == "Example Devices" and row.tls_subject.startswith("CN=device")
    ssh = next(s for s in SERVICES if s.protocol == "ssh")
    row = frame[(frame.ip == ip_int(ssh.ip)) & (frame.port == ssh.port)].iloc[0]
    assert row.banner == ssh.banner == row.ssh_banner and len(row.ssh_hostkey_sha256) == 64
    http = next(s for s in SERVICES if s.protocol == "http" and s.port == 80)
    row = frame[(frame.ip == ip_int(http.ip)) & (frame.port == http.port)].iloc[0]
    assert row.banner.startswith(http.banner.split("\r\n")[0] + "\r\n")
    assert row.http_status == int(http.banner.split(" ")[1])
    names = [line.split(": ", 1)[0] for line in row.http_headers.split("\n")]
    assert names == sorted(n.lower() for n in names) and "www-authenticate" in names


def test_zgrab2_without_port_needs_default_port(tmp_path: Path) -> None:
    record = {"ip": "93.184.1.1", "data": {"http": {"status": "success", "protocol": "http", "result": {}}}}
    path = write_jsonl(tmp_path / "z.jsonl", [record] * 3)
    result = run([path], max_reject_rate=1.0)
    assert result.counts["rejected_by_reason"] == {"missing_field": 3}
    assert "--default-port" in result.rejects.entries[0]["detail"]
    result = run([path], default_port=8080)
    assert result.frame.port.tolist() == [8080] and result.counts["duplicates_merged"] == 2


def test_zmap_csv_with_and_without_header(tmp_path: Path) -> None:
    with_header = tmp_path / "zmap.csv"
    with_header.write_text("\n".join(samples.zmap_csv_lines(SERVICES)) + "\n")
    result = run([with_header])
    assert result.inputs[0]["format"] == "zmap"
    assert result.counts["filtered_by_reason"] == {"zmap_rst": 1}
    assert set(zip(result.frame.ip.tolist(), result.frame.port.tolist(), strict=True)) == expected_keys(
        SERVICES
    )
    assert (result.frame.banner == "").all()
    bare = tmp_path / "zmap-default.csv"
    bare.write_text("\n".join(samples.zmap_csv_lines(SERVICES, header=False)) + "\n")
    assert len(run([bare]).frame) == len(expected_keys(SERVICES))
    single = tmp_path / "zmap-single-port.csv"
    single.write_text("1.2.3.4\n5.6.7.8\n")
    assert run([single], default_port=443).frame.port.tolist() == [443, 443]


def test_zmap_json(tmp_path: Path) -> None:
    records = list(samples.zmap_json_records(SERVICES))
    records.append({**records[0], "sport": 1, "classification": "rst", "success": False})
    result = run([write_jsonl(tmp_path / "zmap.json", records)])
    assert result.inputs[0]["format"] == "zmap"
    assert result.counts["filtered_by_reason"] == {"zmap_rst": 1}
    assert (result.frame.window > 0).all()


def test_censys_host_records_jsonl_and_array(tmp_path: Path) -> None:
    records = list(samples.censys_records(SERVICES))
    lines = write_jsonl(tmp_path / "censys.jsonl", records)
    result = run([lines])
    assert result.inputs[0]["format"] == "censys"
    assert set(zip(result.frame.ip.tolist(), result.frame.port.tolist(), strict=True)) == expected_keys(
        SERVICES
    )
    assert result.counts["filtered_by_reason"] == {"censys_non_tcp": len(records)}
    frame = result.frame
    assert set(frame.protocol) <= {"http", "tls", "ssh", "smtp", "imap", "telnet"}
    assert frame.http_title.dropna().eq("Welcome").all() and frame.tls_cert_sha256.notna().any()
    array = tmp_path / "censys.json"
    array.write_bytes(orjson.dumps(records))
    assert run([array]).frame.equals(frame)
    platform = [{"result": {"resource": {"host": r}}} for r in records]
    assert run([write_jsonl(tmp_path / "platform.jsonl", platform)]).frame.equals(frame)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_inputs(tmp_path: Path, compression: str) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in samples.lzr_records(SERVICES))
    path = tmp_path / f"lzr.jsonl.{compression}"
    path.write_bytes(
        gzip.compress(data) if compression == "gzip" else zstandard.ZstdCompressor().compress(data)
    )
    result = run([path])
    assert result.inputs[0]["compression"] == compression
    assert len(result.frame) == len(expected_keys(SERVICES))


def test_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in samples.gps_records(SERVICES))

    class FakeStdin:
        buffer = io.BytesIO(gzip.compress(data))

    monkeypatch.setattr("sys.stdin", FakeStdin)
    result = ingest(["-"], IngestConfig(backend="cpu"))
    assert result.inputs[0]["path"] == "-" and len(result.frame) == len(expected_keys(SERVICES))


def test_services_parquet_round_trip(tmp_path: Path, backend: Backend) -> None:
    first = run([write_jsonl(tmp_path / "z.jsonl", samples.zgrab2_records(SERVICES))], backend)
    path = write_services(first.frame, tmp_path / "services.parquet")
    again = run([path], backend)
    assert again.inputs[0]["format"] == "services"
    assert as_pandas(again.frame).equals(as_pandas(first.frame))
    assert as_pandas(read_services(path, backend)).equals(as_pandas(first.frame))


def test_several_inputs_are_one_table(tmp_path: Path) -> None:
    half = len(SERVICES) // 2
    a = write_jsonl(tmp_path / "a.jsonl", samples.gps_records(SERVICES[:half]))
    b = write_jsonl(tmp_path / "b.jsonl", samples.lzr_records(SERVICES[half:]))
    result = run([a, b])
    assert [i["format"] for i in result.inputs] == ["gps", "lzr"]
    assert len(result.frame) == len(expected_keys(SERVICES))


def test_duplicates_merge_first_non_empty_value(tmp_path: Path) -> None:
    records = [
        {"ip": "8.8.8.8", "p": 53, "asn": None, "data": "first", "fingerprint": "dns", "w": 0},
        {"ip": "8.8.8.8", "p": 53, "asn": 15169, "data": "second", "fingerprint": "dns", "w": 1024},
        {"ip": "8.8.4.4", "p": 53, "asn": 15169, "data": "", "fingerprint": "dns", "w": 7},
        {"ip": "8.8.4.4", "p": 53, "asn": 15169, "data": "late banner", "fingerprint": "dns", "w": 8},
    ]
    result = run([write_jsonl(tmp_path / "d.jsonl", records)])
    frame = result.frame.set_index(["ip", "port"])
    assert result.counts["duplicates_merged"] == 2
    assert frame.loc[(ip_int("8.8.8.8"), 53)][["asn", "banner", "window"]].tolist() == [15169, "first", 1024]
    assert frame.loc[(ip_int("8.8.4.4"), 53)][["banner", "window"]].tolist() == ["late banner", 7]


def test_asn_annotation_from_pyasn_file(tmp_path: Path) -> None:
    from gpsgpu.io.asn import read_asn_table

    ipasn = tmp_path / "ipasn.dat"
    ipasn.write_text(
        "; IP-ASN32-DAT file\n93.184.0.0/16\t13335\n93.184.5.0/24\t64500\n"
        "185.12.0.0/16\t16276_1\n2001:db8::/32\t1\n"
    )
    records = [{k: v for k, v in r.items() if k != "zannotate"} for r in samples.lzr_records(SERVICES)]
    records.append({**records[0], "saddr": "93.184.5.9", "sport": 1})
    path = write_jsonl(tmp_path / "lzr.jsonl", records)
    result = ingest([str(path)], IngestConfig(backend="cpu"), read_asn_table(ipasn))
    frame = result.frame
    by_ip = dict(zip(frame.ip.tolist(), frame.asn.tolist(), strict=False))
    assert by_ip[ip_int("93.184.5.9")] == 64500
    for ip, asn in by_ip.items():
        first = ip >> 24
        expected = {93: 13335, 185: 16276}.get(first, 0) if ip != ip_int("93.184.5.9") else 64500
        if ip >> 8 == ip_int("93.184.5.0") >> 8:
            expected = 64500
        assert asn == expected
    assert result.counts["asn_annotated"] == int((frame.asn != 0).sum())


def test_detect_format() -> None:
    assert detect_format(b'{"ip":"1.2.3.4","p":80}\n', "x") == ("gps", "jsonl")
    assert detect_format(b'{"saddr":"1.2.3.4","sport":80,"data":"x"}\n', "x") == ("lzr", "jsonl")
    assert detect_format(b'{"saddr":"1.2.3.4","sport":80,"classification":"synack"}', "x") == (
        "zmap",
        "jsonl",
    )
    assert detect_format(b'{"ip":"1.2.3.4","data":{"http":{}}}', "x") == ("zgrab2", "jsonl")
    assert detect_format(b'{"ip":"1.2.3.4","services":[]}', "x") == ("censys", "jsonl")
    assert detect_format(b"[{}]", "x") == ("censys", "json-array")
    assert detect_format(b"ip,p,asn,data,fingerprint,w\n", "x") == ("gps", "csv")
    assert detect_format(b"1.2.3.4,80\n", "x") == ("zmap", "csv")
    with pytest.raises(InputError, match="pass --format"):
        detect_format(b'{"hello": 1}\n', "x")


def test_metadata_is_json_serializable(tmp_path: Path) -> None:
    result = run([write_jsonl(tmp_path / "s.jsonl", samples.gps_records(SERVICES))])
    json.dumps(result.counts)
    json.dumps(result.inputs)
    assert len(result.inputs[0]["sha256"]) == 64


def test_named_format_single_column_zmap_and_garbage_first_line(tmp_path: Path) -> None:
    single = tmp_path / "zmap.txt"
    single.write_text("1.2.3.4\n5.6.7.8\n")
    result = ingest([str(single)], IngestConfig(backend="cpu", format="zmap", default_port=22))
    assert result.frame.port.tolist() == [22, 22]
    garbage = tmp_path / "seed.jsonl"
    garbage.write_bytes(
        b"not json\n" + b"\n".join(orjson.dumps(r) for r in samples.gps_records(SERVICES)) + b"\n"
    )
    result = ingest([str(garbage)], IngestConfig(backend="cpu", format="gps"))
    assert result.counts["rejected_by_reason"] == {"malformed": 1}

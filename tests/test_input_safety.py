"""Nothing lost, nothing overwritten (issue 17): every input is read to the end or refused with one
line naming it, every record that is not kept is counted as a reject, and nothing a user can feed
the commands ends in a traceback."""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import zstandard

from gpsgpu import cli, samples
from gpsgpu.io import sources

SERVICES = samples.sample_services(60, seed=17)
GPS_LINES = [orjson.dumps(r) for r in samples.gps_records(SERVICES)]

COMPRESSORS = {
    "gzip": gzip.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


def run(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: bytes | None = None,
) -> tuple[int, str]:
    """``gpsgpu ARGS`` through the console entry point, in process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["gpsgpu", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:  # the command logs to this test's captured stderr: later tests must not
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    """The single ``gpsgpu: error:`` line of a failed command (and no traceback)."""
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("gpsgpu: error:")]
    assert len(errors) == 1, err
    return errors[0]


def many_gps_lines(n: int) -> bytes:
    """``n`` distinct GPS JSON lines (enough that a cut compressed file is not trivially short)."""
    lines = []
    for i in range(n):
        record = {"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "p": 80 + i % 7, "asn": 64500}
        record |= {"data": f"HTTP/1.1 200 OK\r\nServer: s{i % 97}\r\n", "fingerprint": "http", "w": 0}
        lines.append(orjson.dumps(record))
    return b"\n".join(lines) + b"\n"


# --- 1. truncated compressed inputs ----------------------------------------------------------------


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
@pytest.mark.parametrize("fraction", [0.6, 0.1])
def test_a_truncated_compressed_input_is_one_error_naming_the_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    compression: str,
    fraction: float,
) -> None:
    data = COMPRESSORS[compression](many_gps_lines(60_000 if fraction > 0.5 else 20))
    path = tmp_path / f"scan.jsonl.{compression}"
    path.write_bytes(data[: int(len(data) * fraction)])
    out = tmp_path / "out.parquet"
    code, err = run(["ingest", str(path), "-o", str(out)], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 3
    assert f"{path}: truncated {compression} input" in line, line
    assert not out.exists()


def test_whole_compressed_inputs_still_read_to_the_end(tmp_path: Path) -> None:
    from gpsgpu.io.sources import open_input, read_all

    data = many_gps_lines(5_000)
    for name, compress in COMPRESSORS.items():
        path = tmp_path / f"scan.{name}"
        # two members / frames / streams back to back, as `cat a.gz b.gz` makes
        path.write_bytes(compress(data) + compress(data))
        with open_input(path) as source:
            assert source.compression == name
            assert read_all(source) == data + data


def test_a_truncated_csv_gzip_is_no_longer_reported_as_aborted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = b"ip,p,asn,data,fingerprint,w\n" + b"".join(
        b"10.0.%d.%d,80,1,hello,http,0\n" % (i >> 8 & 255, i & 255) for i in range(50_000)
    )
    data = gzip.compress(rows)
    path = tmp_path / "seed.csv.gz"
    path.write_bytes(data[: int(len(data) * 0.6)])
    code, err = run(["ingest", str(path), "-o", str(tmp_path / "o.parquet")], capsys, monkeypatch)
    assert code == 3 and "truncated gzip input" in one_error_line(err)
    assert "aborted" not in err


def test_a_truncated_zstd_on_stdin_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = COMPRESSORS["zstd"](many_gps_lines(60_000))
    code, err = run(
        ["ingest", "-", "-o", str(tmp_path / "o.parquet")],
        capsys,
        monkeypatch,
        stdin=data[: len(data) * 6 // 10],
    )
    assert code == 3 and "-: truncated zstd input" in one_error_line(err)


def test_a_truncated_zstd_on_real_stdin_exits_3(tmp_path: Path) -> None:
    data = COMPRESSORS["zstd"](many_gps_lines(20_000))
    done = subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", "ingest", "-", "-o", str(tmp_path / "o.parquet")],
        input=data[: len(data) * 6 // 10],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert b"-: truncated zstd input" in done.stderr and b"Traceback" not in done.stderr


def test_portdist_ingest_refuses_a_truncated_compressed_flow_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = b"ts,src,dst,dport,proto,flags\n" + b"".join(
        b"%d,192.0.2.%d,10.0.%d.%d,%d,tcp,S\n"
        % (1_700_000_000 + i, i & 255, i >> 8 & 255, i & 255, 1 + i % 999)
        for i in range(60_000)
    )
    for compression in ("gzip", "zstd", "xz"):
        data = COMPRESSORS[compression](rows)
        path = tmp_path / f"flows.csv.{compression}"
        path.write_bytes(data[: len(data) * 6 // 10])
        code, err = run(
            ["portdist", "ingest", str(path), "-o", str(tmp_path / "p.parquet")], capsys, monkeypatch
        )
        assert code == 3 and f"{path}: truncated {compression} input" in one_error_line(err)


# --- 5. byte-order mark ----------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["jsonl", "csv"])
def test_a_leading_utf8_bom_is_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, container: str
) -> None:
    if container == "jsonl":
        body = b"\n".join(GPS_LINES) + b"\n"
    else:
        body = b"ip,p,asn,data,fingerprint,w\n" + b"".join(
            b"10.0.0.%d,%d,1,hello,http,0\n" % (i, 80 + i) for i in range(1, 41)
        )
    n = body.count(b"\n") - (container == "csv")
    for fmt in ("auto", "gps"):
        path = tmp_path / f"bom.{container}"
        path.write_bytes(b"\xef\xbb\xbf" + body)
        code, err = run(
            [
                "ingest",
                str(path),
                "-o",
                str(tmp_path / "o.parquet"),
                "--format",
                fmt,
                "--max-reject-rate",
                "0",
            ],
            capsys,
            monkeypatch,
        )
        assert code == 0, err
        assert f"{n:,} records ->" in err and "0 rejected" in err, err


# --- 8. unreadable inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["ingest"], ["portdist", "ingest"]])
def test_unreadable_inputs_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    out = str(tmp_path / "o.parquet")
    if Path("/proc/self/mem").exists():
        code, err = run([*command, "/proc/self/mem", "-o", out], capsys, monkeypatch)
        assert code == 3 and "/proc/self/mem: cannot read" in one_error_line(err)
    code, err = run([*command, str(tmp_path), "-o", out], capsys, monkeypatch)
    assert code == 3 and f"{tmp_path}: is a folder" in one_error_line(err)
    locked = tmp_path / "locked.jsonl"
    locked.write_bytes(b"\n".join(GPS_LINES))

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # root reads mode-000 files, so the open itself is refused
    monkeypatch.setattr(sources, "open", denied, raising=False)
    code, err = run([*command, str(locked), "-o", out], capsys, monkeypatch)
    assert code == 3 and f"{locked}: cannot open (Permission denied)" in one_error_line(err)


# --- 2. a quote that never closes ------------------------------------------------------------------


def _ingest_frame(path: Path) -> object:
    from gpsgpu.config import IngestConfig
    from gpsgpu.io.ingest import ingest

    return ingest([str(path)], IngestConfig(backend="cpu")).frame


def ingest_counts(path: Path, **flags: object) -> tuple[dict, list[dict]]:
    from gpsgpu.config import IngestConfig
    from gpsgpu.io.ingest import ingest

    result = ingest([str(path)], IngestConfig(backend="cpu", **flags))  # type: ignore[arg-type]
    return result.counts, result.rejects.entries


GPS_HEADER = "ip,p,asn,data,fingerprint,w"


def gps_csv_rows(n: int) -> list[str]:
    return [f"10.0.{i >> 8}.{i & 255},{80 + i % 9},1,hello {i},http,0" for i in range(n)]


@pytest.mark.parametrize("chunk_bytes", [None, 64])
def test_an_unclosed_quote_costs_its_own_line_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int | None
) -> None:
    from gpsgpu.io import ingest as ingest_module

    if chunk_bytes:  # rows carried across many small blocks
        monkeypatch.setattr(ingest_module, "CHUNK_BYTES", chunk_bytes)
    rows = gps_csv_rows(30)
    rows[4] = '10.9.9.9,80,1,"never closed,http,0'
    path = tmp_path / "seed.csv"
    path.write_text("\n".join([GPS_HEADER, *rows]) + "\n")
    counts, rejects = ingest_counts(path)
    assert counts["records"] == 30 and counts["services"] == 29
    assert counts["rejected_by_reason"] == {"unbalanced_quote": 1}
    assert [(r["line"], r["reason"]) for r in rejects] == [(6, "unbalanced_quote")]
    assert rejects[0]["record"] == rows[4]


def test_an_unclosed_quote_closed_by_a_later_record_is_undone(tmp_path: Path) -> None:
    rows = gps_csv_rows(12)
    rows[2] = '10.9.9.9,80,1,"opens here,http,0'
    rows[7] = '10.9.9.8,80,1,"a, quoted",http,0'  # its first quote closes the one on rows[2]
    path = tmp_path / "seed.csv"
    path.write_text("\n".join([GPS_HEADER, *rows]) + "\n")
    counts, rejects = ingest_counts(path, max_reject_rate=1.0)
    assert counts["records"] == 12 and counts["services"] == 11
    assert [(r["line"], r["reason"]) for r in rejects] == [(4, "unbalanced_quote")]


@pytest.mark.parametrize("chunk_bytes", [None, 100])
def test_quoted_banners_spanning_lines_are_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int | None
) -> None:
    import csv

    from gpsgpu.io import ingest as ingest_module

    if chunk_bytes:
        monkeypatch.setattr(ingest_module, "CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "seed.csv"
    records = list(samples.gps_records(SERVICES))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ip", "p", "asn", "data", "fingerprint", "w"])
        writer.writeheader()
        writer.writerows(records)
    assert any("\n" in r["data"] for r in records)
    counts, rejects = ingest_counts(path, max_reject_rate=0.0)
    assert counts["records"] == len(records) and rejects == []


def test_unclosed_quotes_in_zmap_csv(tmp_path: Path) -> None:
    lines = ["saddr,sport"] + [f"10.0.0.{i},80" for i in range(1, 21)]
    lines[5] = '"10.0.0.5,80'
    path = tmp_path / "zmap.csv"
    path.write_text("\n".join(lines) + "\n")
    counts, rejects = ingest_counts(path, max_reject_rate=1.0)
    assert counts["records"] == 20 and counts["services"] == 19
    assert [(r["line"], r["reason"]) for r in rejects] == [(6, "unbalanced_quote")]


def test_unclosed_quote_via_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = gps_csv_rows(200)
    rows[10] = '10.9.9.9,80,1,"never closed,http,0'
    path = tmp_path / "seed.csv"
    path.write_text("\n".join([GPS_HEADER, *rows]) + "\n")
    code, err = run(["ingest", str(path), "-o", str(tmp_path / "o.parquet")], capsys, monkeypatch)
    assert code == 0, err
    assert "200 records -> 199 services" in err and "1 rejected: unbalanced_quote 1" in err, err


# --- 3. a maximum record length ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jsonl", "csv", "jsonl-unterminated"])
def test_a_line_over_the_limit_is_one_reject_read_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    from gpsgpu.io import ingest as ingest_module
    from gpsgpu.io import sources

    monkeypatch.setattr(sources, "MAX_RECORD_BYTES", 4096)
    monkeypatch.setattr(ingest_module, "MAX_RECORD_BYTES", 4096)
    monkeypatch.setattr(ingest_module, "CHUNK_BYTES", 1000)  # the long line spans many reads
    if kind == "csv":
        lines = [GPS_HEADER.encode(), *(r.encode() for r in gps_csv_rows(20))]
        long_at = 6
    else:
        lines = list(GPS_LINES[:20])
        long_at = 5
    long_line = b"x" * 50_000
    if kind == "jsonl-unterminated":
        body = b"\n".join(lines) + b"\n" + long_line  # the input ends inside it
        long_at = len(lines) + 1
    else:
        body = b"\n".join([*lines[: long_at - 1], long_line, *lines[long_at - 1 :]]) + b"\n"
    path = tmp_path / "scan.txt"
    path.write_bytes(body)
    counts, rejects = ingest_counts(path, max_reject_rate=1.0, format="gps")
    assert counts["records"] == 21 and counts["services"] == 20
    assert [(r["line"], r["reason"]) for r in rejects] == [(long_at, "record_too_long")]
    assert "50,000 bytes" in rejects[0]["detail"] and len(rejects[0]["record"]) <= 2048


def test_the_record_limit_keeps_memory_bounded_on_an_endless_line() -> None:
    from gpsgpu.io.sources import InputSource, _HashingReader, iter_line_chunks

    class Zeros(io.RawIOBase):
        """64 MiB of zero bytes without a newline, read as /dev/zero would be."""

        left = 64 << 20

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: object) -> int:
            n = min(len(buffer), self.left)  # type: ignore[arg-type]
            buffer[:n] = bytes(n)  # type: ignore[index]
            self.left -= n
            return n

    hashing = _HashingReader(Zeros(), "zeros")  # type: ignore[arg-type]
    source = InputSource("zeros", io.BufferedReader(hashing), "none", hashing)
    long_lines: list[tuple[int, int]] = []
    blocks = list(
        iter_line_chunks(source, 1 << 20, on_long_line=lambda n, head, size: long_lines.append((n, size)))
    )
    assert blocks == [] and long_lines == [(1, 64 << 20)]


# --- 4. NUL bytes and deep nesting -------------------------------------------------------------------


def nul_and_deep_inputs() -> list[tuple[str, str, bytes, int, int]]:
    """(name, format, input, line of the bad record, records) for each JSON format and both CSV
    formats: one address holds a NUL byte, or one line is JSON nested 50,000 or 100,000 deep."""
    services = SERVICES[:10]
    good = {
        "gps": [orjson.dumps(r) for r in samples.gps_records(services)],
        "lzr": [orjson.dumps(r) for r in samples.lzr_records(services)],
        "zgrab2": [orjson.dumps(r) for r in samples.zgrab2_records(services)],
        "censys": [orjson.dumps(r) for r in samples.censys_records(services)],
        "zmap": [orjson.dumps({"saddr": s.ip, "sport": s.port}) for s in services],
    }
    deep = b"[" * 100_000 + b"]" * 100_000
    # objects this deep crashed Arrow's JSON reader (the GPS fast path) with a segmentation fault
    deep_objects = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    cases = []
    for fmt, lines in good.items():
        cases.append(
            (
                f"{fmt}-deep-objects",
                fmt,
                b"\n".join([*lines[:3], deep_objects, *lines[3:]]) + b"\n",
                4,
                len(lines) + 1,
            )
        )
        ip = next(s.ip for s in services if f'"{s.ip}"'.encode() in lines[3])
        nul = lines[3].replace(f'"{ip}"'.encode(), f'"{ip[:3]}\\u0000{ip[3:]}"'.encode())
        cases.append(
            (f"{fmt}-deep", fmt, b"\n".join([*lines[:3], deep, *lines[3:]]) + b"\n", 4, len(lines) + 1)
        )
        cases.append((f"{fmt}-nul", fmt, b"\n".join([*lines[:3], nul, *lines[4:]]) + b"\n", 4, len(lines)))
    csv_rows = [GPS_HEADER, *gps_csv_rows(10)]
    csv_rows[4] = "10.0.\x000.3,80,1,hello,http,0"
    cases.append(("gps-csv-nul", "gps", ("\n".join(csv_rows) + "\n").encode(), 5, 10))
    zmap_rows = ["saddr,sport"] + [f"10.0.0.{i},80" for i in range(1, 11)]
    zmap_rows[4] = "10.0.\x000.4,80"
    cases.append(("zmap-csv-nul", "zmap", ("\n".join(zmap_rows) + "\n").encode(), 5, 10))
    return cases


@pytest.mark.parametrize("case", nul_and_deep_inputs(), ids=lambda c: c[0])
def test_a_nul_byte_or_deep_nesting_rejects_one_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: tuple
) -> None:
    _, fmt, data, bad_line, n_records = case
    path = tmp_path / "scan.txt"
    path.write_bytes(data)
    for given in ("auto", fmt):
        counts, rejects = ingest_counts(path, max_reject_rate=1.0, format=given)
        assert [r["line"] for r in rejects] == [bad_line], (given, rejects)
        assert counts["rejected"] == 1 and counts["records"] == n_records, counts
    code, err = run(["ingest", str(path), "-o", str(tmp_path / "o.parquet")], capsys, monkeypatch)
    assert code == 3 and "rejected" in one_error_line(err)  # over the 1% default, but one line


# --- 6. comment lines --------------------------------------------------------------------------------


def test_comment_lines_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = gps_csv_rows(10)
    path = tmp_path / "seed.csv"
    path.write_text(
        "\n".join(["# written by a scanner", GPS_HEADER, *rows[:5], "#", " # x", *rows[5:]]) + "\n"
    )
    counts, rejects = ingest_counts(path)
    assert counts["records"] == 13 and counts["services"] == 10 and rejects == []
    assert counts["filtered_by_reason"] == {"comment": 3}
    code, err = run(["ingest", str(path), "-o", str(tmp_path / "o.parquet")], capsys, monkeypatch)
    assert code == 0 and "13 records -> 10 services" in err and "3 filtered" in err, err


# --- 2 and 7: flow records of portdist ingest -------------------------------------------------------

FLOW_HEADER = b"ts,src,dst,dport,proto,flags"


def flow_rows(n: int) -> list[bytes]:
    return [
        b"2024-01-01T00:00:%02dZ,192.0.2.%d,10.0.0.1,%d,tcp,S" % (i % 60, i, 80 + i) for i in range(1, n + 1)
    ]


def test_flow_csv_unclosed_quote_costs_its_own_line(tmp_path: Path) -> None:
    from gpsgpu.io.probes import read_probes

    rows = flow_rows(10)
    rows[2] = b'2024-01-01T00:00:03Z,"192.0.2.3,10.0.0.1,83,tcp,S'
    path = tmp_path / "flows.csv"
    path.write_bytes(b"\n".join([FLOW_HEADER, *rows]) + b"\n")
    got = read_probes([str(path)])
    assert got.counts["records"] == 10 and got.counts["probes"] == 9
    assert got.counts["rejected_by_reason"] == {"unbalanced_quote": 1}
    assert [e["line"] for e in got.rejects.entries] == [4]


def test_flow_csv_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpsgpu.io.probes import read_probes

    rows = flow_rows(10)
    rows[5] = b"2024-01-01T00:00:06Z,192.0.2.\xe96,10.0.0.1,86,tcp,S"
    path = tmp_path / "flows.csv"
    path.write_bytes(b"\n".join([FLOW_HEADER, *rows]) + b"\n")
    got = read_probes([str(path)])
    assert got.counts["records"] == 10 and got.counts["probes"] == 9
    assert got.counts["rejected_by_reason"] == {"non_utf8": 1}
    assert [e["line"] for e in got.rejects.entries] == [7]
    code, err = run(["portdist", "ingest", str(path), "-o", str(tmp_path / "p.parquet")], capsys, monkeypatch)
    assert code == 3 and "1 of 10 records rejected" in one_error_line(err)


def test_portdist_errors_never_echo_raw_input_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flows.csv"
    path.write_bytes(b"\x1b[2J\x1b]0;owned\x07ts,src,d\xe9st,dport\n" + b"\n".join(flow_rows(3)) + b"\n")
    code, err = run(["portdist", "ingest", str(path), "-o", str(tmp_path / "p.parquet")], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 3 and "header line is not UTF-8" in line
    assert "\x1b" not in err and "\x07" not in err and "\\x1b[2J" in line
    assert len(line) < len(str(path)) + 160


# --- 8. truncated or corrupt Parquet ----------------------------------------------------------------


def a_parquet_file(path: Path, n: int = 50_000) -> bytes:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "ip": pa.array(np.arange(n, dtype=np.uint32)),
            "port": pa.array(np.full(n, 80, np.uint16)),
            "score": pa.array(np.linspace(0, 1, n, dtype=np.float32)),
        }
    )
    pq.write_table(table, path)
    return path.read_bytes()


def test_a_truncated_or_corrupt_prediction_shard_is_one_error_naming_it(tmp_path: Path) -> None:
    from gpsgpu.errors import InputError
    from gpsgpu.io import predictions

    parts = tmp_path / "PRED" / "parts"
    parts.mkdir(parents=True)
    data = a_parquet_file(parts / "part-00000.parquet")
    cut = parts / "part-00001.parquet"
    cut.write_bytes(data[: len(data) // 2])
    for read in (predictions.read_targets, predictions.read_scores):
        with pytest.raises(InputError, match=r"part-00001\.parquet: not a readable Parquet table") as info:
            read(tmp_path / "PRED")
        assert "\n" not in str(info.value)
    cut.unlink()
    (tmp_path / "PRED" / predictions.HELD_FILE).write_bytes(data[:100])
    with pytest.raises(InputError, match=r"held\.parquet: not a readable Parquet table"):
        predictions.read_held(tmp_path / "PRED")


def test_corrupt_parquet_pages_are_one_error_naming_the_file(tmp_path: Path) -> None:
    from gpsgpu.errors import InputError
    from gpsgpu.io.parquet import read_table

    path = tmp_path / "t.parquet"
    data = bytearray(a_parquet_file(path))
    for i in range(100, len(data) // 2, 7):  # the footer is intact, the pages are not
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=re.escape(f"{path}: not a readable Parquet table")):
        read_table(path)


@pytest.mark.parametrize("command", ["ingest", "learn"])
def test_a_truncated_parquet_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from gpsgpu.io.parquet import write_services

    scan = tmp_path / "seed.jsonl"
    scan.write_bytes(b"\n".join(GPS_LINES) + b"\n")
    path = tmp_path / "seed.parquet"
    write_services(_ingest_frame(scan), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    code, err = run([command, str(path), "-o", str(tmp_path / "out")], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 3 and str(path) in line and "Parquet" in line, line


def test_predict_refuses_truncated_priors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_bytes(b"\n".join(GPS_LINES) + b"\n")
    code, err = run(["learn", str(seed), "-o", str(tmp_path / "model")], capsys, monkeypatch)
    assert code == 0, err
    data = COMPRESSORS["zstd"](many_gps_lines(60_000))
    priors = tmp_path / "priors.jsonl.zst"
    priors.write_bytes(data[: len(data) * 6 // 10])
    code, err = run(
        ["predict", str(tmp_path / "model"), str(priors), "-o", str(tmp_path / "PRED")], capsys, monkeypatch
    )
    assert code == 3 and f"{priors}: truncated zstd input" in one_error_line(err)
    assert not (tmp_path / "PRED").exists()


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_corrupt_compressed_data_is_one_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    data = bytearray(COMPRESSORS[compression](many_gps_lines(20_000)))
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xA5
    path = tmp_path / f"scan.{compression}"
    path.write_bytes(bytes(data))
    code, err = run(["ingest", str(path), "-o", str(tmp_path / "o.parquet")], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 3 and str(path) in line and ("corrupt" in line or "truncated" in line), line


def test_a_broken_first_record_does_not_decide_the_format(tmp_path: Path) -> None:
    deep = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    path = tmp_path / "scan.jsonl"
    path.write_bytes(b"\n".join([deep, *GPS_LINES[:10]]) + b"\n")
    counts, rejects = ingest_counts(path, max_reject_rate=1.0)
    assert counts["records"] == 11 and counts["services"] == 10
    assert [(r["line"], r["reason"]) for r in rejects] == [(1, "malformed")]


def test_a_truncated_window_file_of_dist_is_one_error_naming_it(tmp_path: Path) -> None:
    from gpsgpu.errors import InputError
    from gpsgpu.io.portdist import WINDOW_INFO, read_window

    folder = tmp_path / "DIST" / "darknet" / "day"
    folder.mkdir(parents=True)
    (folder / WINDOW_INFO).write_text('{"dist_format": 1, "sou')
    with pytest.raises(InputError, match=re.escape(f"{folder / WINDOW_INFO}: not a readable JSON file")):
        read_window(tmp_path / "DIST", "darknet", "day")


def test_a_key_that_is_not_utf8_is_one_reject_on_the_fast_path(tmp_path: Path) -> None:
    lines = list(GPS_LINES[:10])
    lines[6] = lines[6].replace(b'"asn"', b'"\xea\x01sn"')
    path = tmp_path / "scan.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    counts, rejects = ingest_counts(path, max_reject_rate=1.0)
    assert counts["records"] == 10 and [(r["line"], r["reason"]) for r in rejects] == [(7, "non_utf8")]


@pytest.mark.parametrize("length", [4, 0xFFFFFFFC])
def test_a_pcapng_section_header_of_impossible_length_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, length: int
) -> None:
    import struct

    path = tmp_path / "cap.pcapng"
    path.write_bytes(b"\x0a\x0d\x0d\x0a" + struct.pack("<I", length) + b"\x4d\x3c\x2b\x1a" + bytes(40))
    code, err = run(["portdist", "ingest", str(path), "-o", str(tmp_path / "p.parquet")], capsys, monkeypatch)
    assert code == 3 and f"corrupt section header length {length}" in one_error_line(err)


def test_an_unclosed_quote_is_given_up_past_the_record_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv

    from gpsgpu.io import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "MAX_RECORD_BYTES", 4096)
    limit = csv.field_size_limit()
    rows = gps_csv_rows(2_000)  # ~60 kB after the open quote: the reader stops at 4 kB, not the end
    rows[1] = '10.9.9.9,80,1,"never closed,http,0'
    path = tmp_path / "seed.csv"
    path.write_text("\n".join([GPS_HEADER, *rows]) + "\n")
    counts, rejects = ingest_counts(path)
    assert counts["records"] == 2_000 and counts["services"] == 1_999
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "unbalanced_quote")]
    assert "lines later" in rejects[0]["detail"]
    assert csv.field_size_limit() == limit  # the process-wide limit is put back


def test_a_truncated_compressed_capture_is_a_truncated_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import struct

    from gpsgpu.io.probes import read_probes

    def syn(i: int) -> bytes:  # Ethernet, IPv4, TCP SYN to port 1000 + i
        ip = bytes(
            [0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 192, 0, 2, i & 255, 10, 0, i >> 8 & 255, i & 255]
        )
        tcp = struct.pack(">HHIIBBHHH", 40000, 1000 + i, 1, 0, 0x50, 0x02, 1024, 0, 0)
        return b"\x04" * 6 + b"\x02" * 6 + b"\x08\x00" + ip + tcp

    capture = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i in range(20_000):
        frame = syn(i)
        capture += struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame
    data = gzip.compress(capture)
    path = tmp_path / "cap.pcap.gz"
    path.write_bytes(data[: len(data) * 6 // 10])
    out = str(tmp_path / "p.parquet")
    code, err = run(["portdist", "ingest", str(path), "-o", out], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 3 and "truncated pcap: the gzip data ends before its end-of-stream marker" in line, line
    assert "--allow-truncated" in line
    got = read_probes([str(path)], allow_truncated=True)
    n = got.counts["probes"]
    assert 0 < n < 20_000 and got.counts["records"] == n + 1
    assert got.counts["rejected_by_reason"] == {"truncated_file": 1}

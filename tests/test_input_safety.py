"""Nothing lost, nothing overwritten (issue 17): every input is read to the end or refused with one
line naming it, every record that is not kept is counted as a reject, and nothing a user can feed
the commands ends in a traceback."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
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
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
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

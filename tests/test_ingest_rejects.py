"""Bad input never crashes and is never dropped silently: it is counted, written with its line
number to ``OUT.rejects.jsonl``, reported, and past ``--max-reject-rate`` it fails the command
with one line and leaves no table behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from gpsgpu import samples
from gpsgpu.config import IngestConfig
from gpsgpu.errors import InputError, UsageError
from gpsgpu.io.ingest import ingest

GOOD = list(samples.gps_records(samples.sample_services(40, seed=9)))


def gpsgpu(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


def good_lines() -> list[bytes]:
    return [orjson.dumps(r) for r in GOOD]


# (name, the bad line, the reason it must be rejected with)
BAD_LINES = [
    ("malformed", b'{"ip": "1.2.3.4", "p": 80,', "malformed"),
    ("not an object", b'["1.2.3.4", 80]', "malformed"),
    ("invalid address", b'{"ip":"1.2.3.256","p":80,"data":"x","fingerprint":"http","w":1}', "invalid_ip"),
    ("IPv6 address", b'{"ip":"2001:db8::1","p":80,"data":"x","fingerprint":"http","w":1}', "invalid_ip"),
    ("leading zeros", b'{"ip":"01.2.3.4","p":80,"data":"x","fingerprint":"http","w":1}', "invalid_ip"),
    ("port too big", b'{"ip":"1.2.3.4","p":65536,"data":"x","fingerprint":"http","w":1}', "invalid_port"),
    ("negative port", b'{"ip":"1.2.3.4","p":-1,"data":"x","fingerprint":"http","w":1}', "invalid_port"),
    (
        "port not a number",
        b'{"ip":"1.2.3.4","p":"http","data":"x","fingerprint":"http","w":1}',
        "invalid_port",
    ),
    ("non-UTF-8 bytes", b'{"ip":"1.2.3.4","p":80,"data":"\xff\xfe","fingerprint":"http","w":1}', "non_utf8"),
    ("lone surrogate", b'{"ip":"1.2.3.4","p":80,"data":"\\udc80x","fingerprint":"http","w":1}', "non_utf8"),
    ("missing field", b'{"ip":"1.2.3.4","p":80,"fingerprint":"http","w":1}', "missing_field"),
    ("null field", b'{"ip":"1.2.3.4","p":null,"data":"x","fingerprint":"http","w":1}', "missing_field"),
    ("bad ASN", b'{"ip":"1.2.3.4","p":80,"asn":"AS-x","data":"x","fingerprint":"http","w":1}', "invalid_asn"),
    ("bad window", b'{"ip":"1.2.3.4","p":80,"data":"x","fingerprint":"http","w":-5}', "invalid_window"),
    ("data not text", b'{"ip":"1.2.3.4","p":80,"data":{"a":1},"fingerprint":"http","w":1}', "invalid_type"),
    (
        "oversized banner",
        orjson.dumps({"ip": "1.2.3.4", "p": 80, "data": "A" * 70000, "fingerprint": "x", "w": 1}),
        "oversized_banner",
    ),
]


@pytest.mark.parametrize(("name", "bad", "reason"), BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_each_kind_of_bad_line_is_rejected_with_its_line_number(
    tmp_path: Path, name: str, bad: bytes, reason: str
) -> None:
    lines = good_lines()
    lines.insert(7, bad)
    path = tmp_path / "seed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = ingest([str(path)], IngestConfig(backend="cpu", max_reject_rate=0.5))
    assert result.counts["rejected_by_reason"] == {reason: 1}, name
    entry = result.rejects.entries[0]
    assert entry["line"] == 8 and entry["reason"] == reason and entry["source"] == str(path)
    assert entry["detail"]
    assert len(result.frame) == len({(r["ip"], r["p"]) for r in GOOD})


def test_banner_cap_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    path.write_bytes(b"\n".join(good_lines()) + b"\n")
    longest = max(len(r["data"].encode()) for r in GOOD)
    result = ingest(
        [str(path)], IngestConfig(backend="cpu", max_banner_bytes=longest - 1, max_reject_rate=1.0)
    )
    n_long = sum(len(r["data"].encode()) == longest for r in GOOD)
    assert result.counts["rejected_by_reason"] == {"oversized_banner": n_long}


def test_non_utf8_in_csv_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_bytes(
        b"ip,p,asn,data,fingerprint,w\n1.2.3.4,80,1,ok,http,5\n1.2.3.5,80,1,\xff\xfe,http,5\n1.2.3.6,80\n"
    )
    result = ingest([str(path)], IngestConfig(backend="cpu", max_reject_rate=1.0))
    assert result.counts["rejected_by_reason"] == {"non_utf8": 1, "malformed": 1}
    assert sorted(e["line"] for e in result.rejects.entries) == [3, 4]


def test_empty_input_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        ingest([str(empty)], IngestConfig(backend="cpu"))
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n\n  \n")
    with pytest.raises(InputError, match="empty"):
        ingest([str(blank)], IngestConfig(backend="cpu"))


def test_usage_errors() -> None:
    with pytest.raises(UsageError):
        IngestConfig(max_reject_rate=2.0)
    with pytest.raises(UsageError):
        IngestConfig(max_banner_bytes=0)
    with pytest.raises(UsageError):
        ingest(["x"], IngestConfig(format="nmap"))
    with pytest.raises(UsageError, match="standard input"):
        ingest(["-", "-"], IngestConfig())


# --- through the CLI --------------------------------------------------------------------------


def test_cli_past_the_reject_rate_fails_in_one_line_and_writes_no_table(tmp_path: Path) -> None:
    lines = good_lines()
    lines[3] = b"garbage"
    lines[5] = b'{"ip":"1.2.3.4","p":99999,"data":"x","fingerprint":"http","w":1}'
    path = tmp_path / "seed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "seed.parquet"
    done = gpsgpu("ingest", str(path), "-o", str(out))
    assert done.returncode == 3
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "--max-reject-rate" in errors[0] and "Traceback" not in done.stderr
    assert not out.exists() and not (tmp_path / "seed.metadata.json").exists()
    rejects = [json.loads(line) for line in (tmp_path / "seed.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [(4, "malformed"), (6, "invalid_port")]
    assert list(tmp_path.iterdir()) == [path, tmp_path / "seed.rejects.jsonl"] or not any(
        p.name.endswith(".tmp") for p in tmp_path.iterdir()
    )


def test_cli_under_the_reject_rate_succeeds_and_reports(tmp_path: Path) -> None:
    lines = good_lines()
    lines[3] = b"garbage"
    path = tmp_path / "seed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "seed.parquet"
    done = gpsgpu("ingest", str(path), "-o", str(out), "--max-reject-rate", "0.05")
    assert done.returncode == 0, done.stderr
    assert "1 rejected: malformed 1" in done.stderr and str(tmp_path / "seed.rejects.jsonl") in done.stderr
    metadata = json.loads((tmp_path / "seed.metadata.json").read_text())
    assert metadata["counts"]["rejected_by_reason"] == {"malformed": 1}
    assert metadata["config"]["max_reject_rate"] == 0.05
    assert metadata["inputs"]["files"][0]["sha256"] and metadata["backend"] == "cpu"
    assert metadata["version"] and "ingest" in metadata["timings_s"]


def test_cli_missing_file_and_bad_flags_are_one_line(tmp_path: Path) -> None:
    done = gpsgpu("ingest", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x.parquet"))
    assert (
        done.returncode == 3
        and done.stderr.strip().endswith("no such file")
        and "Traceback" not in done.stderr
    )
    done = gpsgpu(
        "ingest", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x.parquet"), "--backend", "tpu"
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    done = gpsgpu("ingest", "-", "-o", str(tmp_path / "x.parquet"), stdin=b"")
    assert done.returncode == 3 and "empty" in done.stderr


def test_cli_reads_stdin(tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    done = gpsgpu("ingest", "-", "-o", str(out), stdin=b"\n".join(good_lines()) + b"\n")
    assert done.returncode == 0, done.stderr
    assert out.exists()

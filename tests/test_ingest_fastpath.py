"""The vectorized GPS-schema reader must give exactly what the per-record reader gives."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpsgpu.io.ingest as ingest_module
from gpsgpu.config import IngestConfig
from gpsgpu.io.ingest import ingest

GOOD = {
    "ip": "93.184.216.34",
    "p": 443,
    "asn": 15133,
    "data": "HTTP/1.1 200 OK\r\n\r\n",
    "fingerprint": "http",
    "w": 65535,
}

VARIANTS: list[bytes] = [
    orjson.dumps(GOOD),
    orjson.dumps({**GOOD, "p": "8080"}),  # BigQuery-style numeric strings
    orjson.dumps({**GOOD, "asn": "AS64500"}),
    orjson.dumps({**GOOD, "asn": None}),
    orjson.dumps({**GOOD, "p": " 80 "}),
    orjson.dumps({**GOOD, "ip": 1572395042}),
    orjson.dumps({**GOOD, "ip": "1.2.3.04"}),
    orjson.dumps({**GOOD, "ip": "256.1.1.1"}),
    orjson.dumps({**GOOD, "p": 70000}),
    orjson.dumps({**GOOD, "w": -1}),
    orjson.dumps({**GOOD, "data": "é" * 40}),
    orjson.dumps({**GOOD, "data": "x" * 300}),
    orjson.dumps({k: v for k, v in GOOD.items() if k != "w"}),
    b'{"ip":"1.2.3.4","p":80,"data":"\\udc80","fingerprint":"x","w":1}',
    b'{"ip":"1.2.3.4","p":80,"data":"\xff","fingerprint":"x","w":1}',
    b"not json at all",
    b"",
    b"   ",
    orjson.dumps({**GOOD, "data": {"nested": True}}),
    orjson.dumps({**GOOD, "p": 80.5}),
    orjson.dumps({**GOOD, "extra": [1, 2, 3]}),
]


def run(path: Path, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(ingest_module, "parse_gps_block", lambda *a, **k: None)
        return ingest(
            [str(path)], IngestConfig(backend="cpu", format="gps", max_banner_bytes=256, max_reject_rate=1)
        )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.integers(0, len(VARIANTS) - 1), st.integers(0, 6), st.integers(0, 3)),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 4096),
)
def test_fast_and_per_record_paths_agree(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    picks: list[tuple[int, int, int]],
    chunk_bytes: int,
) -> None:
    lines = []
    for variant, host, port in picks:  # few hosts and ports, so duplicates are common
        line = VARIANTS[variant]
        if line.startswith(b"{") and b'"ip":"93.184.216.34"' in line:
            line = line.replace(b"93.184.216.34", f"93.184.216.{host}".encode()).replace(
                b'"p":443', f'"p":{440 + port}'.encode()
            )
        lines.append(line)
    path = tmp_path_factory.mktemp("fast") / "seed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(ingest_module, "CHUNK_BYTES", chunk_bytes)
    if not any(line.strip() for line in lines):
        return
    fast = run(path, fast=True, monkeypatch=monkeypatch)
    slow = run(path, fast=False, monkeypatch=monkeypatch)
    assert fast.frame.equals(slow.frame)
    assert fast.counts == slow.counts
    key = lambda e: (e["line"], e["reason"])  # noqa: E731
    assert sorted(map(key, fast.rejects.entries)) == sorted(map(key, slow.rejects.entries))


def test_fast_path_really_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = ingest_module.parse_gps_block

    def spy(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(ingest_module, "parse_gps_block", spy)
    path = tmp_path / "seed.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps({**GOOD, "p": p}) for p in range(100)) + b"\n")
    result = ingest([str(path)], IngestConfig(backend="cpu"))
    assert len(result.frame) == 100 and calls and all(c is not None and c.deferred.size == 0 for c in calls)

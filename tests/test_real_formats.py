"""Ingest on real scanner output as users have it (tests/data/real/<tool>/, see each SOURCES.md).

Every count here is exact: services kept, records filtered and rejected by reason.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import orjson

from gpsgpu.config import IngestConfig
from gpsgpu.io.ingest import IngestResult, ingest
from gpsgpu.io.records import extract_lzr

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

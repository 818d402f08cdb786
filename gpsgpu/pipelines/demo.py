"""``gpsgpu demo``: the whole loop on built-in data, for a first look after installing."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import orjson
import zstandard

from gpsgpu import samples
from gpsgpu.config import IngestConfig
from gpsgpu.io.atomic import atomic_open
from gpsgpu.pipelines.ingest import run_ingest, run_stats


def run_demo(
    output: str | os.PathLike[str], *, backend: str = "auto", hosts: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Write a real-shaped LZR scan of a small synthetic population, ingest it and summarize it."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    scan = out / "seed.lzr.jsonl.zst"
    compressor = zstandard.ZstdCompressor(level=3)
    with atomic_open(scan, "wb") as raw, compressor.stream_writer(raw, closefd=False) as handle:
        for record in samples.lzr_records(samples.sample_services(hosts, seed), seed):
            handle.write(orjson.dumps(record) + b"\n")
    print(f"gpsgpu: demo: wrote an LZR scan of {hosts:,} sample hosts to {scan}", file=sys.stderr)
    table = out / "seed.parquet"
    run_ingest([str(scan)], table, IngestConfig(backend=backend))
    return run_stats(table)

"""Ingest throughput: a GPS-schema JSON Lines seed of N rows -> services Parquet, on one CPU core.

    python bench/bench_ingest.py --rows 1000000 [--backend cpu] [--record]

Generates the input (deterministic, real-shaped: HTTP/TLS/SSH/SMTP banners of typical length),
pins the process to one core (and Arrow to one thread), then times ``gpsgpu ingest``'s pipeline
(parse, validate, merge duplicates, write Parquet + metadata) end to end, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section, environment, write_rows

from gpsgpu import samples
from gpsgpu.config import IngestConfig
from gpsgpu.pipelines.ingest import run_ingest


def make_input(path: Path, n_rows: int, seed: int = 0) -> int:
    """Write ``n_rows`` GPS-schema records: sample services spread over random addresses."""
    rng = random.Random(seed)
    base = samples.sample_services(500, seed)
    with path.open("wb") as handle:
        for index in range(n_rows):
            s = base[index % len(base)]
            record = {
                "ip": ".".join(
                    str(rng.randrange(lo, hi)) for lo, hi in ((1, 224), (0, 256), (0, 256), (1, 255))
                ),
                "p": s.port if index % 4 else rng.randrange(1, 65536),
                "asn": s.asn,
                "data": s.banner,
                "fingerprint": s.protocol,
                "w": s.window,
            }
            handle.write(orjson.dumps(record) + b"\n")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)

    with tempfile.TemporaryDirectory() as tmp:
        seed_path = Path(tmp) / "seed.jsonl"
        size = make_input(seed_path, args.rows)
        seconds = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            metadata = run_ingest(
                [str(seed_path)], Path(tmp) / "seed.parquet", IngestConfig(backend=args.backend)
            )
            seconds.append(time.perf_counter() - start)
        counts = metadata["counts"]
    best, median = min(seconds), statistics.median(seconds)
    env = environment(args.backend)
    row = {
        "bench": "ingest",
        "backend": args.backend,
        "stage": "ingest_gps_jsonl_to_parquet",
        "rows": args.rows,
        "input_bytes": size,
        "services": counts["services"],
        "seconds_best": round(best, 3),
        "seconds_median": round(median, 3),
        "rows_per_s_median": round(args.rows / median),
        "cores": 1,
        **env,
    }
    print(
        f"ingest {args.rows:,} GPS-schema JSONL rows ({size / 1e6:.0f} MB) on 1 core: median {median:.2f} s, "
        f"best {best:.2f} s -> {args.rows / median:,.0f} rows/s (median of {args.repeat})"
    )
    write_rows(f"ingest-{args.backend}-{args.rows}", [row])
    if args.record:
        append_section(
            f"Ingest: GPS-schema JSON Lines -> services Parquet ({env['date']})",
            f"`python bench/bench_ingest.py --rows {args.rows} --record` on {env['device']}, "
            "pinned to 1 core, "
            f"Arrow on 1 thread; versions {env['versions']}.\n\n"
            "| rows | input | services | median s | best s | rows/s (median) | target |\n"
            "|---:|---:|---:|---:|---:|---:|---:|\n"
            f"| {args.rows:,} | {size / 1e6:.0f} MB | {counts['services']:,} | {median:.2f} | {best:.2f} | "
            f"{args.rows / median:,.0f} | >= 200,000 |\n",
        )


if __name__ == "__main__":
    main()

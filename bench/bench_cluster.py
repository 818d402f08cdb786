"""``--cluster`` and out-of-core reads, through the commands: wall time, peak memory, identical outputs.

Runs, each in a fresh process (as a user runs them), ``--repeat`` times:

- ``gpsgpu simulate`` with each ``--cluster`` given (``none``, ``local`` with each ``--workers``): the
  universe generated and the seed's banners rendered in blocks of /16s on the workers;
- ``gpsgpu learn`` on that seed with each ``--partitions`` given: the seed Parquet file read one host
  partition at a time (out of core) instead of whole;

and checks that every run wrote the same bytes (``seed.parquet``) or the same patterns
(``patterns.parquet``). Peak memory is GNU time's maximum resident set size of the command: the
largest single process (the command, or one of the worker processes of a ``local`` cluster).

``--append`` adds the table to ``bench/RESULTS.md``; the rows go to ``bench/out/cluster.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section, environment, write_rows

TIME = "/usr/bin/time"


def _run(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``gpsgpu ARGS`` in a fresh process."""
    command = [sys.executable, "-m", "gpsgpu.cli", "-q", *args]
    if Path(TIME).exists():
        command = [TIME, "-f", "maxrss_kib=%M", *command]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"gpsgpu {' '.join(args)}: exit {done.returncode}: {done.stderr[-2000:]}")
    peak = 0
    for line in done.stderr.splitlines():
        if line.startswith("maxrss_kib="):
            peak = int(line.split("=", 1)[1]) * 1024
    return seconds, peak


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _patterns_digest(model: Path) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(model / "patterns.parquet")
    return hashlib.sha256(table.to_pandas().to_csv(index=False).encode()).hexdigest()[:16]


def run(
    *,
    hosts: int,
    seed_fraction: float,
    clusters: list[tuple[str, int]],
    partitions: list[int],
    repeat: int,
    root: Path,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def measure(stage: str, cluster: str, workers: int, parts: int, args: list[str], out: Path) -> None:
        times, peaks = [], []
        for _ in range(repeat):
            seconds, peak = _run(args)
            times.append(seconds)
            peaks.append(peak)
        digest = _digest(out / "seed.parquet") if stage == "simulate" else _patterns_digest(out)
        rows.append(
            {
                "stage": stage,
                "cluster": cluster,
                "workers": workers,
                "partitions": parts,
                "median_s": round(statistics.median(times), 3),
                "best_s": round(min(times), 3),
                "peak_rss_bytes": max(peaks),
                "output_digest": digest,
                "repeat": repeat,
            }
        )
        print(f"{stage} {cluster} x{workers} p{parts}: {statistics.median(times):.2f} s", file=sys.stderr)

    sim = ["--hosts", str(hosts), "--seed-fraction", str(seed_fraction), "--truth", "never"]
    net = root / "net-none"
    for cluster, workers in clusters:
        out = root / f"net-{cluster}-{workers}"
        flags = ["--cluster", cluster] + (["--workers", str(workers)] if cluster != "none" else [])
        measure(
            "simulate",
            cluster,
            workers,
            0,
            ["simulate", "-o", str(out), *sim, "--backend", "cpu", *flags],
            out,
        )
        if cluster == "none":
            net = out
    for parts in partitions:
        out = root / f"model-{parts}"
        args = [
            "learn",
            str(net / "seed.parquet"),
            "-o",
            str(out),
            "--backend",
            "cpu",
            "--partitions",
            str(parts),
        ]
        measure("learn", "none", 0, parts, args, out)
    return rows


def table_markdown(rows: list[dict[str, Any]]) -> str:
    header = [
        "| command | cluster | workers | partitions | median s | best s | peak RSS MiB | output sha256 |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    body = [
        f"| {r['stage']} | {r['cluster']} | {r['workers'] or '-'} | {r['partitions'] or '-'} "
        f"| {r['median_s']:.2f} | {r['best_s']:.2f} | {r['peak_rss_bytes'] / 2**20:,.0f} "
        f"| `{r['output_digest']}` |"
        for r in rows
    ]
    return "\n".join(header + body)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=float, default=1_000_000)
    parser.add_argument("--seed-fraction", type=float, default=0.02)
    parser.add_argument(
        "--workers", type=int, action="append", default=None, help="local cluster sizes (repeatable; 1 2)"
    )
    parser.add_argument(
        "--partitions", type=int, action="append", default=None, help="learn partitions (repeatable; 1 4)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args(argv)
    clusters = [("none", 0)] + [("local", w) for w in (args.workers or [1, 2])]
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        rows = run(
            hosts=int(args.hosts),
            seed_fraction=args.seed_fraction,
            clusters=clusters,
            partitions=args.partitions or [1, 4],
            repeat=args.repeat,
            root=Path(tmp),
        )
    text = table_markdown(rows)
    same_seed = len({r["output_digest"] for r in rows if r["stage"] == "simulate"}) == 1
    same_model = len({r["output_digest"] for r in rows if r["stage"] == "learn"}) == 1
    verdict = (
        f"Identical outputs: seed.parquet bytes {'yes' if same_seed else 'NO'} across clusters; "
        f"patterns {'yes' if same_model else 'NO'} across partition counts."
    )
    print(text)
    print(verdict)
    if args.append:
        env = environment("cpu")
        write_rows("cluster", rows)
        command = "python3 bench/bench_cluster.py " + " ".join(argv if argv is not None else sys.argv[1:])
        append_section(
            f"Clusters and out-of-core reads through the commands (cpu, {env['date']})",
            f"Device: {env['device']}. Versions: {env['versions']}.\n\nCommand: `{command}`\n\n"
            f"Each row: a fresh `gpsgpu` process, median and best of {args.repeat}; peak RSS is GNU time's "
            f"maximum resident set size (the largest single process).\n\n{text}\n\n{verdict}\n",
        )
    return rows


if __name__ == "__main__":
    main()

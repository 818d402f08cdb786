"""Load benchmark of ``gpsgpu serve``: the neighbours query on loopback, bounded in requests and time.

Starts ``gpsgpu serve`` (uvicorn, 1 worker then 2) on 127.0.0.1 over a small port2dist store, and
drives it from another process with a light asyncio HTTP/1.1 keep-alive client (``--connections``
connections, ``--requests`` requests in all, stopped at ``--seconds``). Reports requests/s and p50/p99
latency; target >= 2,000 requests/s with p99 < 20 ms on 2 cores.

    python bench/bench_serve.py --requests 20000 --connections 16 --record
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import multiprocessing as mp
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, append_section, cpu_model, versions, write_rows

TARGET_RPS = 2_000
TARGET_P99_MS = 20.0


def make_store(folder: Path) -> Path:
    """A small darknet distances store (two simulated days, day and week windows)."""
    from gpsgpu.config import PortdistBuildConfig, PortdistSimulateConfig
    from gpsgpu.pipelines.portdist import run_portdist_build, run_portdist_simulate

    dist = folder / "dist"
    if (dist / "darknet" / "week" / "window.json").is_file():
        return dist
    with contextlib.redirect_stderr(io.StringIO()):
        run_portdist_simulate(folder / "sim", PortdistSimulateConfig(probes_per_day=200_000, days=2, seed=0))
        run_portdist_build(
            [str(folder / "sim")], dist, PortdistBuildConfig(windows=("day", "week"), backend="cpu")
        )
    return dist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _connection(
    port: int, paths: list[bytes], start: int, step: int, total: int, stop_at: float, out: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while i < total and time.perf_counter() < stop_at:
            request = b"GET " + paths[i % len(paths)] + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            out.append(time.perf_counter() - began)
            if not head.startswith(b"HTTP/1.1 200") or not body.startswith(b"{"):
                raise RuntimeError(f"bad response: {head[:80]!r}")
            i += step
    finally:
        writer.close()


async def _drive(
    port: int, paths: list[bytes], total: int, connections: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    began = time.perf_counter()
    stop_at = began + seconds
    await asyncio.gather(
        *(_connection(port, paths, c, connections, total, stop_at, latencies) for c in range(connections))
    )
    wall = time.perf_counter() - began
    lat = np.asarray(latencies) * 1e3
    return {
        "requests": int(lat.size),
        "seconds": wall,
        "rps": lat.size / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def _load_process(
    port: int, paths: list[bytes], total: int, connections: int, seconds: float, queue: Any
) -> None:
    queue.put(asyncio.run(_drive(port, paths, total, connections, seconds)))


def run_load(port: int, paths: list[bytes], total: int, connections: int, seconds: float) -> dict[str, Any]:
    """Run the load generator in its own process (so it does not share the server's interpreter)."""
    queue: Any = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(
        target=_load_process, args=(port, paths, total, connections, seconds, queue)
    )
    process.start()
    result = queue.get(timeout=seconds + 60)
    process.join(timeout=30)
    return result


def serve(dist: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gpsgpu.cli", "serve", "--dist", str(dist), "--port", str(port), "--workers",
         str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).raise_for_status()
            return process, port
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gpsgpu serve did not start") from None
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run (default 20000)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--seconds", type=float, default=30.0, help="time cap per run (default 30)")
    parser.add_argument("--k", type=int, default=10, help="neighbours asked per request")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn workers to try")
    parser.add_argument("--dist", type=Path, default=None, help="a DIST/ to serve (default: a small one)")
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()

    from gpsgpu.io.portdist import read_window

    dist = args.dist or make_store(OUT_DIR / "serve")
    ports = read_window(dist, "darknet", "week").neighbors["port"].drop_duplicates().tolist()
    paths = [f"/api/v1/distances/darknet/week/neighbors/{p}?k={args.k}".encode() for p in ports]
    rows = []
    for workers in args.workers:
        process, port = serve(dist, workers)
        try:
            run_load(port, paths, 1_000, args.connections, 10.0)  # warm-up
            result = run_load(port, paths, args.requests, args.connections, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
        row = {"workers": workers, "connections": args.connections, "k": args.k, **result}
        rows.append(row)
        print(
            f"workers={workers}: {result['requests']:,} requests in {result['seconds']:.2f} s = "
            f"{result['rps']:,.0f} req/s, p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
        )
    write_rows("serve", [{**r, "device": cpu_model()} for r in rows])
    if args.record:
        table = [
            "| uvicorn workers | connections | requests | seconds | requests/s | p50 ms | p99 ms | target |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            met = r["rps"] >= TARGET_RPS and r["p99_ms"] < TARGET_P99_MS
            table.append(
                f"| {r['workers']} | {r['connections']} | {r['requests']:,} | {r['seconds']:.2f} | "
                f"{r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{'met' if met else 'missed'} (>= {TARGET_RPS:,}/s, p99 < {TARGET_P99_MS:.0f} ms) |"
            )
        command = " ".join(["python", "bench/bench_serve.py", *sys.argv[1:]])
        append_section(
            f"gpsgpu serve: neighbours query on loopback ({time.strftime('%Y-%m-%d')}, cpu)",
            f"`{command}` on {cpu_model()}; GET /api/v1/distances/darknet/week/neighbors/PORT?k={args.k} "
            f"over {len(ports)} ports, round robin; the load generator (asyncio, HTTP/1.1 keep-alive) runs "
            f"in its own process on the same 2 cores; versions {versions()}.\n\n" + "\n".join(table),
        )


if __name__ == "__main__":
    main()

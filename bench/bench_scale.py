"""The Internet-scale benchmark: simulate a seed and a priors scan, then learn, plan and predict.

The simulated Internet (:mod:`gpsgpu.sim`) generates, on the chosen backend, a seed scan (every
port of a ``--seed-fraction`` sample of addresses) and a priors scan (every port of a larger
``--priors-fraction`` sample; the seed's addresses are a subset of it). Then the GPS engine runs
learn (:func:`gpsgpu.learn.learn_patterns`), plan (:func:`gpsgpu.plan.plan_priors`) and predict
(:func:`gpsgpu.predict.predict_services` per host partition), in this process or on a Dask cluster
(``--cluster local|local-cuda|tcp://...``), through the same code as the commands.

Per stage it reports wall time, rows per second, peak host memory (this process's maximum RSS;
workers of a cluster are not included), peak device memory (CuPy's pool, GPU only) and the byte
floor: the bytes a stage must read and write (its input and output columns, once each) over the
memory bandwidth measured here (a large copy, bytes read plus bytes written), as a percentage of
the stage's wall time. See ``bench/README.md`` for the Internet-scale command.

Tiny sizes run in CI (``tests/test_bench_scale.py``); ``--append`` adds the table to
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import append_section, environment, write_rows

from gpsgpu import schema
from gpsgpu.backend import Backend, device_memory_used, resolve, use_device_pool
from gpsgpu.blocklist import Blocklist
from gpsgpu.distributed import Mapper, open_cluster
from gpsgpu.io.parquet import write_services
from gpsgpu.learn import learn_patterns
from gpsgpu.partition import split_by_host
from gpsgpu.pipelines.predict import _predict_partition
from gpsgpu.plan import plan_priors
from gpsgpu.predict import prepare_predict
from gpsgpu.sim import ServiceArrays, SimInternet, SimParams
from gpsgpu.sim.partitioned import generate_universe

STEP, HITRATE = 16, 1e-5


def _sync(backend: Backend) -> None:
    if backend is Backend.GPU:  # pragma: no cover - GPU only
        import cupy

        cupy.cuda.Device().synchronize()


def _device_peak(backend: Backend) -> int | None:
    """Peak bytes allocated on the device so far through this process's RMM pool, which cuDF and
    CuPy share (:func:`gpsgpu.backend.use_device_pool` with statistics); GPU only. Workers of a
    cluster are other processes and are not counted."""
    if backend is not Backend.GPU:
        return None
    used = device_memory_used()  # pragma: no cover - GPU only
    return None if used is None else used[1]  # pragma: no cover


def _host_peak() -> int:
    """This process's maximum resident set size, bytes (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def measure_bandwidth(backend: Backend, n_bytes: int = 1 << 28, repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s: a large copy, counting bytes read plus bytes written (median)."""
    xp = backend.xp
    src = xp.arange(n_bytes // 8, dtype=xp.uint64)
    dst = xp.empty_like(src)
    xp.copyto(dst, src)  # warm-up
    _sync(backend)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        xp.copyto(dst, src)
        _sync(backend)
        times.append(time.perf_counter() - t0)
    times.sort()
    return 2 * src.nbytes / times[len(times) // 2]


def frame_bytes(frame: Any) -> int:
    """Bytes of a frame's columns in memory (strings: offsets and characters)."""
    usage = frame.memory_usage(index=False, deep=True)
    return int(usage.sum())


def _simulate(internet: SimInternet, fraction: float, mapper: Mapper) -> Any:
    """The seed scan as a frame: blocks of /16s generated and rendered through ``mapper`` (the
    ``gpsgpu simulate --cluster`` path; the same rows for any number of workers)."""
    blocks = generate_universe(
        internet, mapper=mapper, seed_fraction=fraction, want_truth=False, render_seed=True
    )
    tables = [b.seed_table for b in blocks if b.seed_table is not None]
    return schema.services_from_arrow(pa.concat_tables(tables), internet.backend.xdf)


def _priors_chunks(internet: SimInternet, fraction: float, target_rows: int) -> Iterator[Any]:
    """The priors scan in frames of about ``target_rows`` services, each of whole /16s (so of whole
    hosts): generated batch by batch, never all at once (out of core)."""
    blocklist = Blocklist.default()
    pending: list[Any] = []
    n_pending = 0
    for ips in internet.iter_universe():
        sample = ips[internet.seed_mask(ips, fraction)]
        sample = sample[~blocklist.contains(sample)]
        services = internet.services_of(sample)
        pending.append(services)
        n_pending += len(services)
        if n_pending >= target_rows:
            yield internet.to_frame(ServiceArrays.concat(internet.xp, pending))
            pending, n_pending = [], 0
    if n_pending:
        yield internet.to_frame(ServiceArrays.concat(internet.xp, pending))


def _predict_stream(
    mapper: Mapper, internet: SimInternet, fraction: float, target_rows: int, backend: Backend, **shared: Any
) -> dict[str, Any]:
    """Generate the priors scan chunk by chunk and predict each chunk's host partitions (mapped)."""
    out: dict[str, Any] = {"simulate_s": 0.0, "predict_s": 0.0, "rows": 0, "bytes": 0}
    out.update(predictions=0, pred_bytes=0, partitions=0)
    chunks = _priors_chunks(internet, fraction, target_rows)
    while True:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        _sync(backend)
        out["simulate_s"] += time.perf_counter() - t0
        if chunk is None:
            return out
        t0 = time.perf_counter()
        parts = list(split_by_host(chunk, n_partitions=mapper.n_workers))
        for predicted, _ in mapper.imap(_predict_partition, parts, **shared):
            out["predictions"] += len(predicted)
            out["pred_bytes"] += frame_bytes(predicted)
        _sync(backend)
        out["predict_s"] += time.perf_counter() - t0
        out["rows"] += len(chunk)
        out["bytes"] += frame_bytes(chunk)
        out["partitions"] += len(parts)
        del chunk, parts


def run(
    *,
    backend: Backend,
    hosts: int,
    seed_fraction: float,
    priors_fraction: float,
    cluster: str = "none",
    workers: int = 0,
    priors_per_partition: int = 5_000_000,
    seed_parquet: Path | None = None,
) -> list[dict[str, Any]]:
    """One run of the benchmark; a row per stage."""
    bandwidth = measure_bandwidth(backend)
    rows: list[dict[str, Any]] = []

    def row(stage: str, seconds: float, n_rows: int, read: int, written: int, **extra: Any) -> None:
        floor = (read + written) / bandwidth
        rows.append(
            {
                "backend": backend.value,
                "cluster": cluster,
                "workers": workers,
                "stage": stage,
                "rows": n_rows,
                "seconds": round(seconds, 4),
                "rows_per_s": round(n_rows / seconds) if seconds > 0 else None,
                "bytes_read": read,
                "bytes_written": written,
                "byte_floor_s": float(f"{floor:.4g}"),
                "byte_floor_pct": float(f"{100 * floor / seconds:.4g}") if seconds > 0 else None,
                "peak_host_bytes": _host_peak(),
                "peak_device_bytes": _device_peak(backend),
                "bandwidth_bytes_per_s": round(bandwidth),
                **extra,
            }
        )

    with open_cluster(cluster, workers=workers) as mapper:
        t0 = time.perf_counter()
        internet = SimInternet(SimParams(hosts=hosts, seed=0), backend)
        seed = _simulate(internet, seed_fraction, mapper)
        _sync(backend)
        seconds = time.perf_counter() - t0
        extra: dict[str, Any] = {}
        if seed_parquet is not None:
            # The seed as the commands read it: its Parquet size is the yardstick of device memory.
            write_services(seed, seed_parquet)
            extra["seed_parquet_bytes"] = seed_parquet.stat().st_size
        row("simulate seed", seconds, len(seed), 0, frame_bytes(seed), **extra)

        t0 = time.perf_counter()
        result = learn_patterns(
            seed,
            hitrate=HITRATE,
            n_partitions=max(1, mapper.n_workers),
            workers=1 if mapper.distributed else None,
            mapper=mapper,
        )
        _sync(backend)
        seconds = time.perf_counter() - t0
        row("learn", seconds, len(seed), frame_bytes(seed), frame_bytes(result.patterns),
            patterns=len(result.patterns), rules=len(result.rules))  # fmt: skip

        t0 = time.perf_counter()
        plan = plan_priors(result.patterns, step=STEP, hitrate=HITRATE)
        seconds = time.perf_counter() - t0
        row("plan", seconds, len(result.patterns), frame_bytes(result.patterns), frame_bytes(plan),
            plan_rows=len(plan))  # fmt: skip

        t0 = time.perf_counter()
        tables = prepare_predict(result.rules, plan=plan, seed=result.seed, step=STEP, blocklist=None)
        shared = {
            "tables": mapper.broadcast(tables if mapper.distributed else tables.on(backend)),
            "preset": "gps2022",
            "workers": 1 if mapper.distributed else None,
        }
        broadcast = time.perf_counter() - t0
        stream = _predict_stream(mapper, internet, priors_fraction, priors_per_partition, backend, **shared)
        row("simulate priors", stream["simulate_s"], stream["rows"], 0, stream["bytes"])
        row("predict", stream["predict_s"] + broadcast, stream["rows"],
            stream["bytes"] + frame_bytes(result.rules), stream["pred_bytes"],
            predictions=stream["predictions"], partitions=stream["partitions"])  # fmt: skip
    seed_rows = len(seed)
    engine = [r for r in rows if not r["stage"].startswith("simulate")]
    rows.append(
        {
            "backend": backend.value,
            "cluster": cluster,
            "workers": workers,
            "stage": "learn+plan+predict",
            "rows": seed_rows + stream["rows"],
            "seconds": round(sum(r["seconds"] for r in engine), 4),
            "peak_host_bytes": _host_peak(),
            "peak_device_bytes": _device_peak(backend),
        }
    )
    return rows


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""

    def mib(n: int | None) -> str:
        return "-" if n is None else f"{n / 2**20:,.0f}"

    lines = [
        "| cluster | workers | stage | rows | seconds | rows/s | peak host MiB | peak device MiB "
        "| byte floor % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = f"{r['rows_per_s']:,}" if r.get("rows_per_s") else "-"
        floor = f"{r['byte_floor_pct']:.3g}" if r.get("byte_floor_pct") is not None else "-"
        lines.append(
            f"| {r['cluster']} | {r['workers'] or '-'} | {r['stage']} | {r['rows']:,} | {r['seconds']:.3f} "
            f"| {rate} | {mib(r['peak_host_bytes'])} | {mib(r.get('peak_device_bytes'))} | {floor} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line: see ``--help`` and ``bench/README.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument(
        "--hosts", type=float, default=200_000, help="responsive hosts of the simulated Internet"
    )
    parser.add_argument(
        "--seed-fraction", type=float, default=0.01, help="addresses sampled by the seed scan"
    )
    parser.add_argument(
        "--priors-fraction", type=float, default=0.25, help="addresses sampled by the priors scan"
    )
    parser.add_argument(
        "--cluster",
        action="append",
        default=None,
        help="none|local|local-cuda|tcp://... (repeatable; default none)",
    )
    parser.add_argument("--workers", type=int, default=0, help="workers of a local cluster (0: all)")
    parser.add_argument(
        "--priors-per-partition",
        type=int,
        default=5_000_000,
        help="priors services generated and predicted per chunk",
    )
    parser.add_argument(
        "--seed-parquet",
        type=Path,
        default=None,
        help="also write the seed here (services Parquet) and report peak device memory over its size",
    )
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args(argv)
    backend = resolve(args.backend)
    clusters = args.cluster or ["none"]
    if backend is Backend.GPU and clusters == ["none"]:
        # One RMM pool with statistics: the peak device bytes of each stage. Not beside a
        # local-cuda cluster, whose worker takes its own pool on the same device.
        use_device_pool(statistics=True)
    rows: list[dict[str, Any]] = []
    for cluster in clusters:
        rows += run(
            backend=backend,
            hosts=int(args.hosts),
            seed_fraction=args.seed_fraction,
            priors_fraction=args.priors_fraction,
            cluster=cluster,
            workers=args.workers if cluster != "none" else 0,
            priors_per_partition=args.priors_per_partition,
            seed_parquet=args.seed_parquet,
        )
    text = table_markdown(rows)
    print(text)
    sizes = [r["seed_parquet_bytes"] for r in rows if r.get("seed_parquet_bytes")]
    peaks = [r["peak_device_bytes"] for r in rows if r.get("peak_device_bytes")]
    if sizes and peaks:
        print(
            f"- peak device memory {max(peaks) / 2**20:,.0f} MiB = {max(peaks) / sizes[0]:.1f}x the seed's "
            f"Parquet size ({sizes[0] / 2**20:,.0f} MiB; target < 10x)"
        )
    totals = {r["cluster"]: r["seconds"] for r in rows if r["stage"] == "learn+plan+predict"}
    overhead = ""
    if "none" in totals and len(totals) > 1:
        overhead = "\n".join(
            f"- {name}: learn+plan+predict {secs:.2f} s vs {totals['none']:.2f} s in one process "
            f"({100 * (secs / totals['none'] - 1):+.1f}%)"
            for name, secs in totals.items()
            if name != "none"
        )
        print(overhead)
    if args.append:
        env = environment(backend.value)
        write_rows("scale", rows)
        command = "python3 bench/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
        append_section(
            f"Scale benchmark ({backend.value}, {env['date']})",
            f"Device: {env['device']}. Versions: {env['versions']}.\n\nCommand: `{command}`\n\n"
            f"Seed and priors scan generated by the simulator; byte floor from a measured copy bandwidth of "
            f"{rows[0]['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s.\n\n{text}\n\n{overhead}\n",
        )
    return rows


if __name__ == "__main__":
    main()

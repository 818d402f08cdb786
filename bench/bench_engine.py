"""Benchmark of the GPS engine (compatible mode) against the reference's queries run by DuckDB.

One run generates a seed (``--services``) and a priors scan, then times, on the same in-memory
data, each stage of gpsgpu (learn, plan, predict) on every requested backend and the same stage as
DuckDB SQL (``tests/oracle_gps.py``, with all of the machine's cores), and checks that they agree.
Rows are tidy JSON (``backend, stage, rows, seconds, device, versions, date``) in ``bench/out/``,
and a Markdown section is appended to ``bench/RESULTS.md``.

    python bench/bench_engine.py --services 1000000            # CPU vs DuckDB
    python bench/bench_engine.py --services 1000000 --backend cpu --backend gpu

Timings are wall-clock seconds of the stage functions on data already in memory (no Parquet I/O on
either side); a GPU stage synchronizes the device before its timer stops.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import oracle_gps  # noqa: E402  (tests/ holds the oracle and the data generator)
from gps_data import make_priors, make_services  # noqa: E402

from gpsgpu.backend import Backend, device_memory_used, gpu_available, to_backend, use_device_pool  # noqa: E402
from gpsgpu.blocklist import Blocklist  # noqa: E402
from gpsgpu.learn import learn_patterns  # noqa: E402
from gpsgpu.partition import split_by_host  # noqa: E402
from gpsgpu.plan import cut_blocklisted, plan_priors  # noqa: E402
from gpsgpu.predict import predict_services, prepare_predict  # noqa: E402

SERVICES_PER_HOST = 3.1  # what make_services gives on average (1 to 14 ports per host)


def _sync(backend: Backend) -> None:
    if backend is Backend.GPU:
        import cupy

        cupy.cuda.Device().synchronize()


def _device(backend: str) -> str:
    if backend == Backend.GPU.value:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({os.cpu_count()} cores)"


def _versions() -> dict[str, str]:
    import duckdb
    import pyarrow

    import gpsgpu

    out = {
        "gpsgpu": gpsgpu.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
    }
    for name in ("cupy", "cudf"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = module.__version__
    return out


def run_engine(
    backend: Backend, seed: pd.DataFrame, priors: pd.DataFrame, *, step: int, hitrate: float, repeat: int
) -> tuple[list[tuple[str, int, float]], dict[str, Any]]:
    """Time learn, plan and predict on ``backend`` (device synchronized before each timer stops).

    Returns ``(stage, rows, seconds)`` of each run (``repeat`` runs) and the last run's outputs, with
    the learn step's own breakdown (``learn.<step>``) and, on the GPU, the peak device bytes.
    """
    seed_b, priors_b = to_backend(seed, backend), to_backend(priors, backend)
    blocklist = Blocklist.default()
    timed: list[tuple[str, int, float]] = []
    out: dict[str, Any] = {}
    for _ in range(repeat):
        start = time.perf_counter()
        result = learn_patterns(seed_b, hitrate=hitrate)
        _sync(backend)
        timed.append(("learn", len(seed), time.perf_counter() - start))
        timed += [(f"learn.{name}", len(seed), seconds) for name, seconds in result.timings.items()]
        start = time.perf_counter()
        plan = plan_priors(result.patterns, step=step, hitrate=hitrate)
        timed.append(("plan", len(result.patterns), time.perf_counter() - start))
        # The blocklist cut has no counterpart in the reference's queries: timed on its own.
        start = time.perf_counter()
        cut = cut_blocklisted(plan, step=step, blocklist=blocklist)
        timed.append(("plan_blocklist", len(plan), time.perf_counter() - start))
        start = time.perf_counter()
        # As `gpsgpu predict` does: the rules, seed and plan keyed once (and moved to the device
        # once), then every priors partition predicted against them.
        tables = prepare_predict(result.rules, plan=plan, seed=result.seed, step=step, blocklist=blocklist)
        tables = tables.on(backend)
        parts = [predict_services(p, tables) for p in split_by_host(priors_b, n_partitions=1)]
        _sync(backend)
        timed.append(("predict", len(priors), time.perf_counter() - start))
        out = {
            "patterns": result.patterns,
            "plan": plan,
            "cut": cut,
            "predictions": pd.concat(parts),
            "learn_counts": result.counts,
        }
    used = device_memory_used() if backend is Backend.GPU else None
    if used is not None:
        out["peak_device_bytes"] = used[1]
    return timed, out


def run_duckdb(
    seed: pd.DataFrame,
    priors: pd.DataFrame,
    seed_services: pd.DataFrame,
    *,
    step: int,
    hitrate: float,
    threads: int,
    repeat: int = 1,
) -> tuple[list[tuple[str, int, float]], dict[str, Any]]:
    """Time the reference's queries in DuckDB (TLS certificates pre-extracted, untimed)."""
    bl = Blocklist.default()
    best: dict[str, float] = {}
    out: dict[str, Any] = {}
    for _ in range(repeat):
        con = oracle_gps.connect(threads)
        start = time.perf_counter()
        patterns = oracle_gps.learn(con, seed, hitrate=hitrate)
        best["learn"] = min(best.get("learn", np.inf), time.perf_counter() - start)
        start = time.perf_counter()
        plan = oracle_gps.plan(con, patterns, step=step, hitrate=hitrate)
        best["plan"] = min(best.get("plan", np.inf), time.perf_counter() - start)
        start = time.perf_counter()
        predictions = oracle_gps.predict(
            con,
            patterns,
            priors,
            seed_services,
            step=step,
            hitrate=hitrate,
            blocklist=list(zip(bl.starts.tolist(), bl.ends.tolist(), strict=True)),
        )
        best["predict"] = min(best.get("predict", np.inf), time.perf_counter() - start)
        con.close()
        out = {"patterns": patterns, "plan": plan, "predictions": predictions}
    rows = {"learn": len(seed), "plan": len(out["patterns"]), "predict": len(priors)}
    return [(stage, rows[stage], best[stage]) for stage in ("learn", "plan", "predict")], out


def agree(engine: dict[str, Any], duck: dict[str, Any]) -> dict[str, bool]:
    """Whether the engine's outputs equal DuckDB's (patterns rows, plan rows in order, predictions)."""
    a, b = engine["patterns"], duck["patterns"]
    patterns = len(a) == len(b) and sorted(
        zip(a["ip"].tolist(), a["neededP"].astype(int).tolist(), a["server"].fillna("").tolist(), strict=True)
    ) == sorted(
        zip(b["ip"].tolist(), b["neededP"].astype(int).tolist(), b["server"].fillna("").tolist(), strict=True)
    )
    plan = engine["plan"]["prefix"].astype(int).tolist() == duck["plan"]["prefix"].astype(int).tolist() and (
        engine["plan"]["neededP"].astype(int).tolist() == duck["plan"]["neededP"].astype(int).tolist()
    )
    p, q = engine["predictions"], duck["predictions"]
    predictions = sorted(zip(p["ip"].astype(int), p["port"].astype(int), strict=True)) == sorted(
        zip(q["ip"].astype(int), q["port"].astype(int), strict=True)
    )
    return {"patterns": patterns, "plan": plan, "predictions": predictions}


def _data(n_seed: int, n_priors: int, cache: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seed and priors scan of these sizes: generated once (the generator is a Python loop of a
    minute at 1M + 4M services), then read back from Parquet files under ``cache``."""
    paths = [cache / f"seed-{n_seed}.parquet", cache / f"priors-{n_seed}-{n_priors}.parquet"]
    if all(p.is_file() for p in paths):
        return pd.read_parquet(paths[0]), pd.read_parquet(paths[1])
    seed = make_services(max(10, round(n_seed / SERVICES_PER_HOST)), seed=1, n_families=400, n_networks=60)
    priors = make_priors(seed, max(10, round(n_priors / SERVICES_PER_HOST)), seed=2)
    cache.mkdir(parents=True, exist_ok=True)
    for frame, path in zip((seed, priors), paths, strict=True):
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    return seed, priors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1_000_000, help="seed size, in services")
    parser.add_argument("--priors", type=int, default=None, help="priors scan size (default: seed size / 2)")
    parser.add_argument("--backend", action="append", choices=["cpu", "gpu"], help="repeatable; default cpu")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per side (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed GPU runs first (compiles, pools)")
    parser.add_argument("--step", type=int, default=16)
    parser.add_argument("--hitrate", type=float, default=0.00001)
    parser.add_argument("--duckdb-threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-duckdb", action="store_true", help="time the engine only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    backends = args.backend or ["cpu"]
    if "gpu" in backends and not gpu_available():
        print("bench: no GPU (cuDF/CuPy and a device): skipping the gpu backend", file=sys.stderr)
        backends = [b for b in backends if b != "gpu"]
    if "gpu" in backends:
        use_device_pool(statistics=True)

    start = time.perf_counter()
    seed, priors = _data(args.services, args.priors or args.services // 2, args.out / "data")
    seed_tls = priors_tls = None
    if not args.no_duckdb:  # the reference's SQL reads certificates as hex (untimed preparation)
        seed_tls, priors_tls = oracle_gps.with_tls_hex(seed), oracle_gps.with_tls_hex(priors)
    print(
        f"bench: {len(seed):,} seed and {len(priors):,} priors services ready in "
        f"{time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    versions = _versions()
    seed_services = pd.DataFrame(
        {"ip": seed["ip"].to_numpy(np.uint32), "port": seed["port"].to_numpy(np.uint16)}
    ).drop_duplicates()
    # Runs alternate between the sides, so that a busy spell of the machine hits both alike; the
    # best run of each stage is reported, every run is kept in the JSON.
    samples: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], int] = {}
    outputs: dict[str, dict[str, Any]] = {}
    sides = backends + ([] if args.no_duckdb else ["duckdb"])
    if "gpu" in backends:
        for _ in range(args.warmup):
            run_engine(Backend.GPU, seed, priors, step=args.step, hitrate=args.hitrate, repeat=1)
    for run in range(args.repeat):
        for side in sides:
            if side == "duckdb":
                timed, outputs[side] = run_duckdb(
                    seed_tls,
                    priors_tls,
                    seed_services,
                    step=args.step,
                    hitrate=args.hitrate,
                    threads=args.duckdb_threads,
                )
            else:
                timed, outputs[side] = run_engine(
                    Backend(side), seed, priors, step=args.step, hitrate=args.hitrate, repeat=1
                )
            for stage, n, seconds in timed:
                samples.setdefault((side, stage), []).append(seconds)
                sizes[(side, stage)] = n
            print(
                f"bench: run {run + 1}/{args.repeat} {side}: "
                + ", ".join(f"{s} {t:.2f} s" for s, _, t in timed),
                file=sys.stderr,
            )
    rows: list[dict[str, Any]] = [
        {
            "backend": side,
            "stage": stage,
            "rows": sizes[(side, stage)],
            "seconds": round(float(np.median(times)), 4),
            "best": round(min(times), 4),
            "samples": [round(t, 4) for t in times],
            "device": _device("cpu") + (f", {args.duckdb_threads} DuckDB threads" if side == "duckdb" else "")
            if side != "gpu"
            else _device(side),
        }
        for (side, stage), times in samples.items()
    ]
    reference = "duckdb" if not args.no_duckdb else None
    if reference is None and "cpu" in backends and len(backends) > 1:
        reference = "cpu"
    checks = {
        f"{name} vs {reference}": agree(outputs[name], outputs[reference])
        for name in backends
        if reference is not None and name != reference
    }
    for side in backends:
        peak = outputs[side].get("peak_device_bytes")
        for row in rows:
            if row["backend"] == side and peak is not None:
                row["peak_device_bytes"] = peak
        counts = outputs[side].get("learn_counts", {})
        if "bytes_device_to_host" in counts:
            for row in rows:
                if row["backend"] == side and row["stage"] == "learn":
                    row["bytes_device_to_host"] = counts["bytes_device_to_host"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for row in rows:
        row.update(versions=versions, date=date, load_avg_1min_after=load)

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = date.replace(":", "").replace("-", "")
    out_file = args.out / f"engine-{args.services}-{stamp}.json"
    out_file.write_text(
        json.dumps(
            {
                "rows": rows,
                "agree": checks,
                "args": vars(args) | {"out": str(args.out), "results": str(args.results)},
            },
            indent=2,
        )
        + "\n"
    )
    _append_results(args, rows, checks, len(seed), len(priors), date)
    print(f"bench: wrote {out_file} and appended to {args.results}", file=sys.stderr)
    return 0


def _append_results(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    checks: dict[str, dict[str, bool]],
    n_seed: int,
    n_priors: int,
    date: str,
) -> None:
    duck = {r["stage"]: r["seconds"] for r in rows if r["backend"] == "duckdb"}
    cpu = {r["stage"]: r["seconds"] for r in rows if r["backend"] == "cpu"}
    devices = sorted({f"{r['backend']}: {r['device']}" for r in rows})
    lines = [
        "",
        f"## GPS engine (compatible mode) vs DuckDB SQL, {n_seed:,} seed services, {date}",
        "",
        f"Seed {n_seed:,} services, priors scan {n_priors:,} services (tests/gps_data.py, 400 device "
        f"families), Step {args.step}, Hitrate {args.hitrate}. In-memory stage functions vs the reference's "
        f"queries in DuckDB (tests/oracle_gps.py, {args.duckdb_threads} threads); median of {args.repeat} "
        f"alternating run(s) on each side ({args.warmup} untimed GPU warm-up run first). "
        f"Devices: {'; '.join(devices)}. Command: `python3 bench/bench_engine.py "
        f"{' '.join(sys.argv[1:])}`.",
        "",
        "| backend | stage | rows in | median s | DuckDB s | vs DuckDB | vs CPU backend |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["backend"] == "duckdb":
            continue
        d, c = duck.get(r["stage"]), cpu.get(r["stage"])
        ratio = f"{d / r['seconds']:.1f}x" if d and r["seconds"] > 0 else "n/a"
        vs_cpu = f"{c / r['seconds']:.1f}x" if c and r["backend"] != "cpu" and r["seconds"] > 0 else ""
        lines.append(
            f"| {r['backend']} | {r['stage']} | {r['rows']:,} | {r['seconds']:.3f} | "
            f"{f'{d:.3f}' if d is not None else 'n/a'} | {ratio} | {vs_cpu} |"
        )
    for r in rows:
        if r["stage"] == "learn" and r.get("peak_device_bytes"):
            lines += [
                "",
                f"Peak device memory ({r['backend']}, RMM statistics over the whole run): "
                f"{r['peak_device_bytes'] / 2**20:,.0f} MiB, "
                f"{r['peak_device_bytes'] / n_seed:,.0f} bytes per seed service or "
                f"{r['peak_device_bytes'] / n_priors:,.0f} per priors service; learn copied "
                f"{r.get('bytes_device_to_host', 0) / 2**20:,.1f} MiB back to the host.",
            ]
    load = rows[0].get("load_avg_1min_after") if rows else None
    if load is not None:
        lines += [
            "",
            f"1-minute load average when the run ended: {load:.2f} (other work shares the cores; every "
            "run's time is in the JSON).",
        ]
    for name, check in checks.items():
        lines.append("")
        lines.append(
            f"Outputs equal ({name}): "
            + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in check.items())
            + "."
        )
    lines.append("")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if not args.results.exists():
        args.results.write_text("# Benchmark results\n")
    with open(args.results, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

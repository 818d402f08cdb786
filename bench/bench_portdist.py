"""port2dist benchmarks: build throughput (probes/s) and the all-pairs step for 1K, 4K and 16K ports.

- **build**: one simulated darknet day of ``--probes`` probes (generated outside the timer) through
  the build stages that touch every probe: sort into sequences, classify scans, count transitions.
  Reported as probes per second (median of ``--repeat`` runs), on ``--backend``.
- **apsp**: every port's 64 nearest ports on a synthetic port graph of N ports (Barabasi-Albert,
  4 edges per new port: a few hub ports such as 80/443 and a long tail, like the darknet graph),
  lengths from log-rescaled random weights. Engines: ``scipy`` (Dijkstra, the CPU default),
  ``minplus`` (the NumPy twin of the kernel) and, on a GPU, ``gpu`` (the CUDA kernel). A run whose
  first row block says it would exceed ``--apsp-budget-s`` is extrapolated from that block and
  marked so (rows are independent, so the time is linear in the number of rows).

Usage: ``python bench/bench_portdist.py [--backend cpu|gpu] [--probes 10000000] [--record]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, environment, write_rows

from gpsgpu.backend import Backend, resolve, to_backend
from gpsgpu.portdist import apsp, graph, sequences
from gpsgpu.portdist import columns as C
from gpsgpu.portdist.simulate import DarknetParams, simulate_day


def _sync(backend: Backend) -> None:
    if backend is Backend.GPU:
        import cupy

        cupy.cuda.Device().synchronize()


def bench_build(backend: Backend, probes: int, repeat: int) -> dict:
    frame = simulate_day(DarknetParams(probes_per_day=probes, days=1, seed=0), 0).drop(columns=C.CAMPAIGN)
    times = []
    for _ in range(repeat):
        data = to_backend(frame, backend)
        _sync(backend)
        start = time.perf_counter()
        ordered = sequences.sort_probes(data)
        seqs = sequences.classify_sequences(ordered)
        counts = sequences.count_transitions(ordered, seqs)
        _sync(backend)
        times.append(time.perf_counter() - start)
        del ordered, seqs
    median = statistics.median(times)
    return {
        "backend": backend.value,
        "stage": "build (sort + classify + count)",
        "rows": len(frame),
        "seconds": round(median, 3),
        "best_s": round(min(times), 3),
        "probes_per_s": round(len(frame) / median),
        "pairs": len(counts),
    }


def synthetic_graph(n: int, seed: int = 0) -> graph.PortGraph:
    import networkx as nx

    g = nx.barabasi_albert_graph(n, 4, seed=seed)
    edges = np.asarray(g.edges(), dtype=np.int64)
    rng = np.random.default_rng(seed)
    ports = np.sort(rng.choice(65_536, size=n, replace=False))
    a, b = ports[edges[:, 0]], ports[edges[:, 1]]
    frame = pd.DataFrame({C.A: np.minimum(a, b).astype(np.uint16), C.B: np.maximum(a, b).astype(np.uint16)})
    frame[C.WEIGHT] = np.ceil(rng.lognormal(2.0, 2.0, size=len(frame)))
    frame[C.SOURCES] = 1
    return graph.port_graph(graph.rescale_invert(frame, rescale="log"))


def bench_apsp(n: int, engine: str, budget_s: float, k: int = 64) -> dict:
    g = synthetic_graph(n)
    blocks = list(apsp.iter_row_blocks(g, block_rows=max(1, min(n, (1 << 22) // n))))
    apsp.distance_rows(g, np.arange(1), engine=engine)  # warm-up: imports, kernel compilation
    if engine == "gpu":
        _sync(Backend.GPU)
    start = time.perf_counter()
    done_rows = 0
    extrapolated = False
    for rows in blocks:
        dist = apsp.distance_rows(g, rows, engine=engine)
        apsp.top_k(dist, rows, k)
        if engine == "gpu":
            _sync(Backend.GPU)
        done_rows += rows.size
        elapsed = time.perf_counter() - start
        if elapsed * n / done_rows > budget_s and done_rows < n:
            extrapolated = True
            break
    elapsed = time.perf_counter() - start
    total = elapsed * n / done_rows
    return {
        "backend": "gpu" if engine == "gpu" else "cpu",
        "stage": f"apsp {engine} (top-{k})",
        "rows": n,
        "edges": g.n_edges,
        "seconds": round(total, 3),
        "rows_timed": done_rows,
        "extrapolated": extrapolated,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu", choices=("cpu", "gpu", "auto"))
    parser.add_argument("--probes", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ports", default="1000,4000,16000")
    parser.add_argument("--engines", default=None, help="default: scipy,minplus on CPU; gpu,minplus on GPU")
    parser.add_argument("--apsp-budget-s", type=float, default=240.0)
    parser.add_argument("--record", action="store_true", help="append a section to bench/RESULTS.md")
    args = parser.parse_args()
    backend = resolve(args.backend)
    engines = (args.engines or ("gpu,scipy" if backend is Backend.GPU else "scipy,minplus")).split(",")
    rows = [bench_build(backend, args.probes, args.repeat)]
    print(rows[-1], flush=True)
    for n in (int(x) for x in args.ports.split(",") if x.strip()):
        for engine in engines:
            rows.append(bench_apsp(n, engine, args.apsp_budget_s))
            print(rows[-1], flush=True)
    env = environment(backend.value)
    path = write_rows(f"portdist-{backend.value}-{args.probes}", rows)
    print(f"rows -> {path}")
    if args.record:
        build = rows[0]
        lines = [
            f"`python bench/bench_portdist.py --backend {backend.value} --probes {args.probes} --record` on "
            f"{env['device']}; versions {env['versions']}.",
            "",
            "| stage | size | median s | rate |",
            "|---|---:|---:|---:|",
            f"| {build['stage']} | {build['rows']:,} probes | {build['seconds']} | "
            f"{build['probes_per_s']:,} probes/s |",
        ]
        for r in rows[1:]:
            note = f" (extrapolated from {r['rows_timed']:,} rows)" if r["extrapolated"] else ""
            lines.append(
                f"| {r['stage']} | {r['rows']:,} ports, {r['edges']:,} edges | {r['seconds']}{note} | "
                f"{r['rows'] / r['seconds']:,.0f} source ports/s |"
            )
        if backend is Backend.CPU:
            lines += [
                "",
                "GPU rows (build on cuDF, `apsp gpu` = `kernels/minplus_sssp.cu`) are not measured on this "
                "machine; run `--backend gpu` on a GPU machine to add them.",
            ]
        append_section(f"port2dist: build and all-pairs ({env['date']}, {backend.value})", "\n".join(lines))


if __name__ == "__main__":
    main()

"""Simulated Internet throughput: addresses generated per second, on the CPU (NumPy) and GPU (CuPy).

    python bench/bench_sim.py [--backend cpu|gpu|both] [--addresses 67108864] [--hosts 3e8] [--record]

Builds a full-IPv4-scale simulation (``--hosts``; 3e8 puts every routable /16 in the universe),
then times, over ``--addresses`` addresses in batches of ``--batch`` (whole /16s, as the scanner
and the ground truth generate them):

- ``occupancy``: which addresses hold a responsive host (per-/24 density, churn generation);
- ``services``: every service of every address (families, models, ports, banner keys; numeric);
- ``render``: services as a services table with banners (host-side strings; 1 batch only).

The device is synchronized before each timer stops. Rows are tidy: backend, stage, rows, seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section, environment, write_rows

from gpsgpu.backend import Backend, gpu_available
from gpsgpu.sim import SimInternet, SimParams


def _sync(backend: Backend) -> None:
    if backend is Backend.GPU:
        import cupy

        cupy.cuda.Device().synchronize()


def bench(backend: Backend, n_addresses: int, batch: int, hosts: float) -> list[dict]:
    xp = backend.xp
    start = time.perf_counter()
    internet = SimInternet(SimParams(hosts=int(hosts), seed=0), backend)
    build = time.perf_counter() - start
    prefixes = internet.prefixes
    per_batch = max(1, batch // 65536)
    n_batches = max(1, n_addresses // (per_batch * 65536))
    offsets = xp.arange(65536, dtype=xp.uint32)

    def batch_ips(i: int):
        nets = xp.asarray(prefixes[(i * per_batch) % prefixes.size :][:per_batch])
        return (nets[:, None] + offsets[None, :]).ravel()

    # Warm up (CuPy compiles its elementwise kernels on first use).
    internet.services_of(batch_ips(0))
    _sync(backend)
    rows = [{"backend": backend.value, "stage": "build", "rows": internet.n_prefixes, "seconds": build}]
    for stage in ("occupancy", "services"):
        n_done, n_out = 0, 0
        _sync(backend)
        t0 = time.perf_counter()
        for i in range(n_batches):
            ips = batch_ips(i)
            if stage == "occupancy":
                occ, _ = internet.occupied(ips)
                n_out += int(occ.sum())
            else:
                n_out += len(internet.services_of(ips))
            n_done += int(ips.shape[0])
        _sync(backend)
        seconds = time.perf_counter() - t0
        rows.append({"backend": backend.value, "stage": stage, "rows": n_done, "seconds": seconds,
                     "found": n_out, "addresses_per_s": n_done / seconds})  # fmt: skip
    services = internet.services_of(batch_ips(1))
    _sync(backend)
    t0 = time.perf_counter()
    table = internet.to_arrow(services)
    seconds = time.perf_counter() - t0
    rows.append({"backend": backend.value, "stage": "render", "rows": table.num_rows, "seconds": seconds,
                 "services_per_s": table.num_rows / seconds})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="both", choices=("cpu", "gpu", "both"))
    parser.add_argument("--addresses", type=int, default=1 << 26)
    parser.add_argument("--batch", type=int, default=1 << 22, help="addresses per batch (whole /16s)")
    parser.add_argument("--hosts", type=float, default=3e8)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()
    backends = (
        [Backend.CPU] if args.backend == "cpu" else [Backend.GPU] if args.backend == "gpu" else [Backend.CPU]
    )
    if args.backend == "both" and gpu_available():
        backends.append(Backend.GPU)
    all_rows: list[dict] = []
    lines = []
    for backend in backends:
        rows = bench(backend, args.addresses, args.batch, args.hosts)
        env = environment(backend.value)
        for row in rows:
            row.update(env)
        all_rows += rows
        by = {r["stage"]: r for r in rows}
        lines.append(
            f"| {backend.value} | {env['device']} | {by['occupancy']['addresses_per_s']:,.0f} | "
            f"{by['services']['addresses_per_s']:,.0f} | {by['render']['services_per_s']:,.0f} | "
            f"{by['services']['rows']:,} |"
        )
        print(
            f"{backend.value}: occupancy {by['occupancy']['addresses_per_s']:,.0f} addresses/s, services "
            f"{by['services']['addresses_per_s']:,.0f} addresses/s ({by['services']['found']:,} services), "
            f"render {by['render']['services_per_s']:,.0f} services/s; "
            f"universe built in {by['build']['seconds']:.2f} s"
        )
    path = write_rows("bench_sim", all_rows)
    print(f"rows -> {path}")
    if args.record:
        env = environment(backends[0].value)
        body = "\n".join(
            [
                f"`python bench/bench_sim.py --addresses {args.addresses} --hosts {args.hosts:g}` on "
                f"{env['date']}; versions: {', '.join(f'{k} {v}' for k, v in env['versions'].items())}.",
                "Addresses of a full-IPv4-scale simulated Internet generated per second (whole /16 batches "
                f"of {args.batch:,} addresses; the device synchronized before each timer stops).",
                "",
                "| backend | device | occupancy (addresses/s) | services (addresses/s) | render (services/s) "
                "| addresses timed |",
                "|---|---|---:|---:|---:|---:|",
                *lines,
            ]
        )
        if not gpu_available():
            body += "\n\nNo GPU on this machine: the GPU row is to be measured on one (`--backend gpu`)."
        append_section("Simulated Internet (bench/bench_sim.py)", body)


if __name__ == "__main__":
    main()

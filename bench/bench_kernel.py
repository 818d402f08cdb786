"""The pair-expansion kernel (``kernels/expand_pairs.cu``) against the device's measured memory bandwidth.

A synthetic host CSR (``--hosts`` hosts of 2..10 ports, ``--features`` feature rows per service,
seeded) is expanded into its ``(feature of p1) x p2`` pair keys, the hot loop of learning. On the GPU
the timed region is the kernel launch alone (the pair offsets are computed before; the device is
synchronized before the clock stops); on the CPU it is the NumPy twin ``ops.cpu.expand_pairs``. The
GPU result is first checked equal to the twin's on the first rows.

Bytes the kernel must move, at least: per feature row its ``row_slot`` (8), ``row_fid`` (4), pair
offset (8), and its slot's ``slot_first`` and ``slot_count`` (8 + 8); per pair the other slot's port
(2) and the key written (8). That over the kernel's time is its effective bandwidth, reported as a
percentage of the copy bandwidth measured in the same run (``bench_scale.measure_bandwidth``: a
256 MiB device copy, bytes read plus written). The issue's target: >= 40% on the GPU.

``--append`` adds the table to ``bench/RESULTS.md``; rows go to ``bench/out/kernel.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scale import _sync, measure_bandwidth
from common import append_section, environment, write_rows

from gpsgpu.backend import Backend, resolve
from gpsgpu.ops import cpu

ROW_BYTES = 8 + 4 + 8 + 8 + 8
PAIR_BYTES = 2 + 8


def host_csr(n_hosts: int, features: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A host CSR of ``n_hosts`` hosts with 2..10 ports each and ``features`` rows per slot (host arrays)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(2, 11, size=n_hosts)
    slot_first_host = np.r_[0, np.cumsum(k)[:-1]]
    n_slots = int(k.sum())
    slot_count = np.repeat(k, k).astype(np.int64)
    slot_first = np.repeat(slot_first_host, k).astype(np.int64)
    # Random ports, sorted within each host (the kernel's precondition).
    ports = rng.integers(1, 65536, size=n_slots).astype(np.int64)
    order = np.lexsort((ports, np.repeat(np.arange(n_hosts), k)))
    slot_port = ports[order].astype(np.uint16)
    row_slot = np.repeat(np.arange(n_slots, dtype=np.int64), features)
    row_fid = rng.integers(0, 1 << 20, size=row_slot.size).astype(np.uint32)
    return {
        "row_slot": row_slot,
        "row_fid": row_fid,
        "slot_port": slot_port,
        "slot_first": slot_first,
        "slot_count": slot_count,
    }


def run(backend: Backend, *, hosts: int, features: int, repeat: int) -> dict[str, Any]:
    csr = host_csr(hosts, features)
    n_rows = int(csr["row_slot"].size)
    n_pairs = int((csr["slot_count"][csr["row_slot"]] - 1).sum())
    bandwidth = measure_bandwidth(backend)
    times = []
    if backend is Backend.GPU:  # pragma: no cover - GPU only
        import cupy as cp

        from gpsgpu.ops import gpu

        dev = {name: cp.asarray(values) for name, values in csr.items()}
        check = min(n_rows, 100_000)
        got = gpu.expand_pairs(*(dev[n][:check] if n.startswith("row") else dev[n] for n in csr)).get()
        want = cpu.expand_pairs(*(csr[n][:check] if n.startswith("row") else csr[n] for n in csr))
        if not np.array_equal(got, want):
            raise SystemExit("expand_pairs: the kernel differs from its NumPy twin")
        offsets = gpu.pair_offsets(dev["row_slot"], dev["slot_count"])
        keys = cp.empty(n_pairs, dtype=cp.uint64)
        kernel = gpu._function("expand_pairs")
        args = (dev["row_slot"], dev["row_fid"], dev["slot_port"], dev["slot_first"], dev["slot_count"],
                offsets, keys, cp.int64(n_rows))  # fmt: skip
        kernel(gpu._grid(n_rows), (gpu.THREADS,), args)  # warm-up: compilation
        _sync(backend)
        for _ in range(repeat):
            t0 = time.perf_counter()
            kernel(gpu._grid(n_rows), (gpu.THREADS,), args)
            _sync(backend)
            times.append(time.perf_counter() - t0)
    else:
        host = cpu.host_table(csr["slot_port"], csr["slot_first"], csr["slot_count"])
        for _ in range(repeat):
            t0 = time.perf_counter()
            keys = cpu.expand_pairs(*csr.values(), host=host)
            times.append(time.perf_counter() - t0)
        if keys.size != n_pairs:
            raise SystemExit("expand_pairs: wrong number of pairs")
    seconds = statistics.median(times)
    moved = n_rows * ROW_BYTES + n_pairs * PAIR_BYTES
    return {
        "backend": backend.value,
        "kernel": "expand_pairs" if backend is Backend.GPU else "ops.cpu.expand_pairs (NumPy twin)",
        "hosts": hosts,
        "rows": n_rows,
        "pairs": n_pairs,
        "median_s": round(seconds, 6),
        "best_s": round(min(times), 6),
        "bytes_moved": moved,
        "effective_bytes_per_s": round(moved / seconds),
        "copy_bandwidth_bytes_per_s": round(bandwidth),
        "pct_of_bandwidth": float(f"{100 * moved / seconds / bandwidth:.4g}"),
        "repeat": repeat,
    }


def table_markdown(rows: list[dict[str, Any]]) -> str:
    header = [
        "| backend | timed | feature rows | pairs | median s | effective GB/s | copy GB/s | % of copy "
        "| target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    body = [
        f"| {r['backend']} | {r['kernel']} | {r['rows']:,} | {r['pairs']:,} | {r['median_s']:.4f} "
        f"| {r['effective_bytes_per_s'] / 1e9:.1f} | {r['copy_bandwidth_bytes_per_s'] / 1e9:.1f} "
        f"| {r['pct_of_bandwidth']:.3g}% | {'>= 40% (GPU)' if r['backend'] == 'gpu' else 'none (CPU twin)'} |"
        for r in rows
    ]
    return "\n".join(header + body)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=["auto", "cpu", "gpu"], help="repeatable; auto")
    parser.add_argument("--hosts", type=float, default=1_000_000, help="hosts of the synthetic CSR")
    parser.add_argument("--features", type=int, default=8, help="feature rows per service")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args(argv)
    backends = [resolve(b) for b in (args.backend or ["auto"])]
    rows = [run(b, hosts=int(args.hosts), features=args.features, repeat=args.repeat) for b in backends]
    text = table_markdown(rows)
    print(text)
    if args.append:
        env = environment(backends[-1].value)
        write_rows("kernel", rows)
        command = "python3 bench/bench_kernel.py " + " ".join(argv if argv is not None else sys.argv[1:])
        names = "/".join(b.value for b in backends)
        append_section(
            f"Pair-expansion kernel vs memory bandwidth ({names}, {env['date']})",
            f"Device: {env['device']}. Versions: {env['versions']}.\n\nCommand: `{command}`\n\n{text}\n",
        )
    return rows


if __name__ == "__main__":
    main()

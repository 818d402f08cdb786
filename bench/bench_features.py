"""The features stage by preset (``gps2022``, ``extended``): services per second on simulated services.

The first ``--rows`` services of a simulated Internet's ground truth (``--net NET/``, or a fresh one
of ``--hosts`` hosts simulated into a temporary folder) are featurized with
:func:`gpsgpu.features.feature_arrays_of_table`, best of ``--repeat`` runs, on the CPU (the stage
builds strings on the host on either backend). Rows go to ``bench/out/features.json``: backend,
stage, rows, seconds, rows/s, features per service, distinct features, device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import environment, write_rows

from gpsgpu.features import PRESETS, feature_arrays_of_table, feature_columns


def truth_path(net: str | None, hosts: float, root: Path) -> Path:
    if net is not None:
        return Path(net) / "truth.parquet"
    from gpsgpu.config import SimulateConfig
    from gpsgpu.pipelines.simulate import run_simulate

    run_simulate(root / "net", SimulateConfig(hosts=int(hosts), backend="cpu"), progress=lambda _: None)
    return root / "net" / "truth.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--net", help="a simulated Internet (NET/ with truth.parquet)")
    parser.add_argument("--hosts", type=float, default=5e5, help="hosts to simulate when no --net")
    parser.add_argument("--rows", type=float, default=1e6, help="services to featurize")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--threads", type=int, default=1, help="threads (chunks of 2**18 rows when > 1)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        table = pq.read_table(truth_path(args.net, args.hosts, Path(tmp)))
    table = table.slice(0, int(args.rows))
    table = table.select(feature_columns(table.column_names, "extended"))
    chunk_rows = 1 << 18 if args.threads > 1 else 1 << 30
    device = environment("cpu")["device"]
    for preset in args.presets.split(","):
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            arrays = feature_arrays_of_table(
                table, preset=preset, workers=args.threads, chunk_rows=chunk_rows
            )
            best = min(best, time.perf_counter() - start)
        row = {
            "backend": "cpu",
            "stage": f"features/{preset}",
            "rows": table.num_rows,
            "seconds": round(best, 3),
            "rows_per_s": round(table.num_rows / best),
            "features_per_service": round(arrays.row.size / table.num_rows, 2),
            "distinct_features": arrays.n_features,
            "threads": args.threads,
            "device": device,
        }
        rows.append(row)
        print(
            f"{preset}: {row['rows']:,} services in {best:.2f} s = {row['rows_per_s']:,} services/s, "
            f"{row['features_per_service']} features/service, {row['distinct_features']:,} distinct",
            file=sys.stderr,
        )
    print(write_rows("features", rows), file=sys.stderr)


if __name__ == "__main__":
    main()

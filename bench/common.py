"""Shared benchmark plumbing: tidy result rows, environment description, RESULTS.md sections."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
RESULTS_MD = BENCH_DIR / "RESULTS.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_model() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in (
        "gpsgpu",
        "numpy",
        "pandas",
        "pyarrow",
        "orjson",
        "duckdb",
        "cudf-cu13",
        "cupy-cuda13x",
        "dask",
    ):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def environment(backend: str) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "device": gpu_model() if backend == "gpu" else f"{cpu_model()} ({os.cpu_count()} cores visible)",
        "versions": versions(),
    }


def write_rows(name: str, rows: list[dict[str, Any]]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path


def append_section(title: str, body: str) -> None:
    """Append a dated section to bench/RESULTS.md (creating it with its header if needed)."""
    if not RESULTS_MD.exists():
        RESULTS_MD.write_text(
            "# Benchmark results\n\nEvery figure here was produced by a script in `bench/` on the device"
            " named in its section; GPU figures come only from runs on a GPU machine.\n"
        )
    with RESULTS_MD.open("a", encoding="utf-8") as handle:
        handle.write(f"\n## {title}\n\n{body.rstrip()}\n")

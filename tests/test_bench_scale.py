"""The Internet-scale benchmark at a tiny CPU size, so that it cannot rot (no timings asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_scale.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_scale_benchmark_runs_at_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    argv = ["--backend", "cpu", "--hosts", "3000", "--seed-fraction", "0.05", "--priors-fraction", "0.3"]
    rows = bench.main([*argv, "--cluster", "none", "--cluster", "local", "--workers", "2"])
    out = capsys.readouterr().out
    stages = [(r["cluster"], r["stage"]) for r in rows]
    for cluster in ("none", "local"):
        for stage in ("simulate seed", "simulate priors", "learn", "plan", "predict", "learn+plan+predict"):
            assert (cluster, stage) in stages
    by = {(r["cluster"], r["stage"]): r for r in rows}
    # The same predictions with and without the cluster; the byte floor is a percentage.
    assert by["none", "predict"]["predictions"] == by["local", "predict"]["predictions"] > 0
    assert by["none", "learn"]["rules"] == by["local", "learn"]["rules"] > 0
    assert all(by[c, s]["byte_floor_pct"] > 0 for c in ("none", "local") for s in ("learn", "predict"))
    assert "| none | - | learn |" in out and "local: learn+plan+predict" in out


def _load_named(name: str) -> ModuleType:
    path = BENCH.with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kernel_benchmark_runs_at_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _load_named("bench_kernel").main(["--backend", "cpu", "--hosts", "2000", "--repeat", "1"])
    assert rows[0]["pairs"] > rows[0]["rows"] > 0 and rows[0]["pct_of_bandwidth"] > 0
    assert "| cpu | ops.cpu.expand_pairs (NumPy twin) |" in capsys.readouterr().out


@pytest.mark.slow
def test_cluster_benchmark_runs_at_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--hosts", "20000", "--seed-fraction", "0.05", "--workers", "1", "--partitions", "1",
            "--partitions", "3", "--repeat", "1"]  # fmt: skip
    rows = _load_named("bench_cluster").main(argv)
    assert [(r["stage"], r["cluster"]) for r in rows] == [
        ("simulate", "none"), ("simulate", "local"), ("learn", "none"), ("learn", "none")
    ]  # fmt: skip
    assert "seed.parquet bytes yes" in capsys.readouterr().out

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

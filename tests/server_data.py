"""Stores for the ``gpsgpu serve`` tests: a small demo's model and plan, a model learnt with its counts,
and a distances folder with darknet windows (day, week) and the model's co-location window."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from gpsgpu.cli import app
from gpsgpu.config import DemoConfig, PortdistBuildConfig, PortdistSimulateConfig
from gpsgpu.pipelines.demo import run_demo
from gpsgpu.pipelines.portdist import run_portdist_build, run_portdist_simulate


def build_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"demo", "model", "plan", "dist"}``, made once per test session (about 5 s)."""
    root = tmp_path_factory.getbasetemp() / "serve-stores"
    paths = {
        "demo": root / "demo",
        "model": root / "model",
        "plan": root / "demo" / "plan",
        "dist": root / "dist",
    }
    if (root / "done").is_file():
        return paths
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run_demo(
            paths["demo"], config=DemoConfig(hosts=20_000, seed_fraction=0.05, xgboost=False, backend="cpu")
        )
        app(
            ["learn", str(paths["demo"] / "net" / "seed.parquet"), "-o", str(paths["model"]), "--save-counts",
             "--backend", "cpu"],
            standalone_mode=False,
        )  # fmt: skip
        run_portdist_simulate(root / "sim", PortdistSimulateConfig(probes_per_day=30_000, days=2, seed=3))
        run_portdist_build(
            [str(root / "sim")], paths["dist"], PortdistBuildConfig(windows=("day", "week"), backend="cpu")
        )
        run_portdist_build(
            [], paths["dist"], PortdistBuildConfig(windows=(), from_model=str(paths["model"]), backend="cpu")
        )
    (root / "done").write_text("ok\n")
    return paths

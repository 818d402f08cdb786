"""``gpsgpu simulate``: outputs, byte-identical reruns, one-line errors for impossible parameters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpsgpu.config import SimulateConfig
from gpsgpu.errors import UsageError
from gpsgpu.pipelines.simulate import run_simulate
from gpsgpu.sim import read_params


def gpsgpu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_simulate_writes_everything_and_reruns_identically(tmp_path: Path) -> None:
    config = SimulateConfig(hosts=15_000, seed_fraction=0.02, seed=11, export="gps", backend="cpu")
    run_simulate(tmp_path / "a", config, progress=lambda _: None)
    run_simulate(tmp_path / "b", config, progress=lambda _: None)
    for name in (
        "seed.parquet",
        "truth.parquet",
        "seed.gps.jsonl.zst",
        "params.json",
        "stats.json",
        "stats.md",
    ):
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a == b, name
    params, extra = read_params(tmp_path / "a")
    assert params.hosts == 15_000 and params.seed == 11 and extra["seed_fraction"] == 0.02
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["hosts"] > 10_000
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert meta["counts"]["seed_probes"] == meta["counts"]["seed_addresses"] * 65536
    assert "real Internet" in (tmp_path / "a" / "stats.md").read_text()


def test_no_truth_file_when_asked(tmp_path: Path) -> None:
    run_simulate(
        tmp_path / "n", SimulateConfig(hosts=5_000, truth="never", backend="cpu"), progress=lambda _: None
    )
    assert not (tmp_path / "n" / "truth.parquet").exists()
    assert (tmp_path / "n" / "seed.parquet").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--hosts", "0"], "--hosts"),
        (["--hosts", "-3"], "--hosts"),
        (["--hosts", "lots"], "--hosts"),
        (["--seed-fraction", "0"], "--seed-fraction"),
        (["--seed-fraction", "1.5"], "--seed-fraction"),
        (["--seed-fraction", "-0.1"], "--seed-fraction"),
        (["--day", "-1"], "--day"),
    ],
)
def test_impossible_parameters_are_one_line_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    done = gpsgpu("simulate", "-o", str(tmp_path / "x"), *flags)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "values", [{"hosts": 0}, {"seed_fraction": 0.0}, {"seed_fraction": 2.0}, {"day": -2}]
)
def test_config_validation(values: dict) -> None:
    with pytest.raises(UsageError):
        SimulateConfig(**values)

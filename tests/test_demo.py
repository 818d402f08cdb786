"""``gpsgpu demo`` end to end on a small simulated Internet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpsgpu.config import DemoConfig
from gpsgpu.pipelines.demo import run_demo


def test_demo_runs_the_whole_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    facts = run_demo(
        tmp_path / "demo", config=DemoConfig(hosts=20_000, seed_fraction=0.05, xgboost=False, backend="cpu")
    )
    out = capsys.readouterr()
    assert "| GPS |" in out.out and "| exhaustive |" in out.out
    assert "| improved campaign |" in out.out
    for step in ("[1/5] simulate", "[3/5] compatible campaign", "[4/5] improved campaign", "[5/5] evaluate"):
        assert step in out.err
    for path in ("net/seed.parquet", "model", "model-improved", "campaign/steps/001/rows.csv",
                 "campaign/steps/002/targets.txt", "campaign-improved/log.jsonl", "eval/coverage.png",
                 "eval/normalized.png", "eval/summary.md"):  # fmt: skip
        assert (tmp_path / "demo" / path).exists(), path
    assert 0 < facts["gps_fraction"] <= 1
    assert facts["gps_normalized"] < facts["gps_fraction"]
    assert facts["gps_probes"] * 10 < facts["exhaustive_probes"]
    # The improved campaign ran within the compatible campaign's probes.
    assert 0 < facts["improved_probes"] <= facts["gps_probes"]


@pytest.mark.slow
def test_demo_cli_with_the_xgboost_baseline(tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    done = subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", "demo", "-o", str(tmp_path / "d"), "--hosts", "20000",
         "--seed-fraction", "0.05", "--backend", "cpu"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "XGBoost scanner" in done.stdout
    assert (tmp_path / "d" / "eval" / "xgboost.png").is_file()


def test_demo_rejects_impossible_parameters(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", "demo", "-o", str(tmp_path / "d"), "--seed-fraction", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "--seed-fraction" in done.stderr and "Traceback" not in done.stderr

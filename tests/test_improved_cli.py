"""The stage and round flags are gone from ``plan`` and ``predict`` (a campaign runs the schedule):
given on the command line or in a config file, they are usage errors, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpsgpu.config import PlanConfig, PredictConfig, load_config
from gpsgpu.errors import UsageError


def test_removed_flags_are_usage_errors(tmp_path: Path) -> None:
    for args in (
        ("plan", "M", "-o", str(tmp_path / "P"), "--stage", "tail"),
        ("predict", "M", "priors.parquet", "-o", str(tmp_path / "X"), "--after", "PRED1"),
    ):
        done = subprocess.run([sys.executable, "-m", "gpsgpu.cli", *args], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and args[-2] in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("cls", "section", "key"),
    [(PlanConfig, "plan", "part"), (PredictConfig, "predict", "rounds"), (PredictConfig, "predict", "found")],
)
def test_removed_keys_are_unknown_in_a_config_file(tmp_path: Path, cls: type, section: str, key: str) -> None:
    toml = tmp_path / "gpsgpu.toml"
    toml.write_text(f'[{section}]\n{key} = "x"\n', encoding="utf-8")
    with pytest.raises(UsageError, match=f"unknown key.*{key}"):
        load_config(cls, section, file=toml, environ={})


def test_min_score_is_a_number_within_0_1() -> None:
    assert PredictConfig(min_score=0.25).min_score == 0.25
    assert load_config(PredictConfig, "predict", environ={"GPSGPU_MIN_SCORE": "0.5"}).min_score == 0.5
    with pytest.raises(UsageError, match=r"within 0\.\.1"):
        PredictConfig(min_score=1.5)
    with pytest.raises(UsageError, match="MIN_SCORE"):
        load_config(PredictConfig, "predict", environ={"GPSGPU_MIN_SCORE": "yield"})


def test_plan_and_predict_import_no_evaluation_or_simulation_code() -> None:
    code = (
        "import sys, gpsgpu.pipelines.plan, gpsgpu.pipelines.predict; "
        "print([m for m in sys.modules if m.startswith(('gpsgpu.evaluate', 'gpsgpu.sim'))])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

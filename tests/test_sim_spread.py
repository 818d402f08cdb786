"""``port_spread``: 1.0 is today's simulator to the bit; more spreads services; bad values fail."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpsgpu.backend import Backend, to_numpy
from gpsgpu.config import SimulateConfig
from gpsgpu.errors import UsageError
from gpsgpu.pipelines.simulate import run_simulate
from gpsgpu.sim import SIM_VERSION, SimInternet, SimParams, read_params
from gpsgpu.sim.params import TALK_PORT_SPREAD, parse_port_spread
from gpsgpu.sim.stats import sim_statistics

_FIELDS = ("ip", "port", "asn", "protocol", "window", "banner_key", "family")

#: SHA-256 of the ground truth of ``SimParams(hosts=20_000, seed=7)`` as generated before
#: ``port_spread`` existed (SIM_VERSION 1): the knob at 1.0 must not move a single byte.
DEFAULT_TRUTH_SHA256 = "a3a1c1044e850f3e01ea800c47901086e3159caf6de73434cf35bf478c101ca7"


def _digest(params: SimParams, backend: Backend = Backend.CPU) -> str:
    truth = SimInternet(params, backend).ground_truth()
    h = hashlib.sha256()
    for name in _FIELDS:
        h.update(np.ascontiguousarray(to_numpy(getattr(truth, name))).tobytes())
    return h.hexdigest()


@pytest.mark.skipif(SIM_VERSION != 1, reason="the pinned digest is of generator version 1")
def test_spread_one_is_todays_simulator() -> None:
    assert SimParams().port_spread == 1.0
    assert _digest(SimParams(hosts=20_000, seed=7, port_spread=1.0)) == DEFAULT_TRUTH_SHA256


def test_default_flag_writes_the_same_bytes(tmp_path: Path) -> None:
    quiet = {"progress": lambda _: None}
    run_simulate(tmp_path / "a", SimulateConfig(hosts=5_000, seed=3, backend="cpu"), **quiet)
    run_simulate(
        tmp_path / "b", SimulateConfig(hosts=5_000, seed=3, port_spread="default", backend="cpu"), **quiet
    )
    for name in ("seed.parquet", "truth.parquet", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    params, _ = read_params(tmp_path / "b")
    assert params.port_spread == 1.0


def test_params_without_the_field_read_as_one(tmp_path: Path) -> None:
    document = {"sim": {k: v for k, v in SimParams(hosts=5_000).to_dict().items() if k != "port_spread"}}
    (tmp_path / "params.json").write_text(json.dumps(document), encoding="utf-8")
    params, _ = read_params(tmp_path)
    assert params.port_spread == 1.0 and params == SimParams(hosts=5_000)


def test_larger_spread_flattens_the_ports() -> None:
    base = sim_statistics(SimInternet(SimParams(hosts=30_000, seed=7)).ground_truth())
    spread = sim_statistics(SimInternet(SimParams(hosts=30_000, seed=7, port_spread=8)).ground_truth())
    assert spread["real"]["on_top_10_ports"] < base["real"]["on_top_10_ports"] - 0.1
    assert spread["real"]["missed_by_top_7_6pct_ports"] > base["real"]["missed_by_top_7_6pct_ports"]
    assert spread["real"]["http_not_on_80"] > base["real"]["http_not_on_80"]
    # The same hosts: the knob moves services between ports, it does not add or remove hosts.
    assert spread["hosts"] == base["hosts"]


def test_cpu_and_gpu_spread_the_same(backend: Backend) -> None:
    params = SimParams(hosts=20_000, seed=7, port_spread=TALK_PORT_SPREAD)
    assert _digest(params, backend) == _digest(params, Backend.CPU)


def test_names_and_numbers() -> None:
    assert parse_port_spread("default") == 1.0
    assert parse_port_spread("talk") == TALK_PORT_SPREAD
    assert parse_port_spread("2.5") == 2.5
    assert SimulateConfig(port_spread="talk").port_spread == TALK_PORT_SPREAD
    assert SimParams(port_spread=2) == SimParams(port_spread=2.0)


@pytest.mark.parametrize("value", [0.5, 0.0, -1.0, float("nan"), float("inf"), 101.0, "wide", True])
def test_bad_spreads_are_usage_errors(value: object) -> None:
    with pytest.raises(UsageError):
        SimParams(port_spread=value)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        SimulateConfig(port_spread=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0.5", "nan", "wide"])
def test_bad_spread_flag_is_a_one_line_error(tmp_path: Path, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", "simulate", "-o", str(tmp_path / "x"), "--port-spread", value],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "--port-spread" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert not (tmp_path / "x").exists()

"""The engine's commands on the GPU give the CPU's outputs: learn, plan and predict with
``--backend gpu`` against ``--backend cpu`` in both modes, and ``--cluster local-cuda --workers 1``
against ``--cluster none``, on a simulated Internet of 100k hosts (several blocks, chunks and
grid-stride passes of every kernel). Every test here needs a CUDA device (marker ``gpu``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from gpsgpu.config import LearnConfig, PlanConfig, PredictConfig, SimulateConfig
from gpsgpu.io.predictions import SHARDS_DIR
from gpsgpu.pipelines.learn import run_learn
from gpsgpu.pipelines.plan import run_plan
from gpsgpu.pipelines.predict import run_predict
from gpsgpu.pipelines.simulate import run_sim_scan, run_simulate

pytestmark = pytest.mark.gpu

HOSTS, SEED_FRACTION, SEED = 100_000, 0.02, 11
MODES = {
    "compatible": {"mode": "compatible", "preset": "gps2022"},
    "improved": {"mode": "improved", "preset": "extended"},
}


def _table(path: Path) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas()
    keys = [c for c in ("ip", "port", "p", "neededP", "server") if c in frame.columns]
    return frame.sort_values(keys).reset_index(drop=True) if keys else frame


def _loop(root: Path, net: Path, mode: str, backend: str, cluster: str = "none") -> Path:
    """learn -> plan -> sim-scan (CPU, shared) -> predict into ``root`` on one backend."""
    model, plan, pred = root / "model", root / "plan", root / "pred"
    flags = {"backend": backend, "cluster": cluster, "workers": 1 if cluster != "none" else 0}
    run_learn([str(net / "seed.parquet")], model, LearnConfig(partitions=2, **MODES[mode], **flags))
    run_plan(model, plan, PlanConfig())
    priors = net.parent / f"priors-{mode}.parquet"
    if not priors.exists():  # the priors scan depends on the plan only, which the tests compare
        run_sim_scan(net, plan, priors, backend="cpu")
    config = PredictConfig(plan=str(plan), priors_per_partition=50_000, **flags)
    run_predict(model, [str(priors)], pred, config)
    return root


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpu-net") / "net"
    run_simulate(
        root,
        SimulateConfig(hosts=HOSTS, seed_fraction=SEED_FRACTION, seed=SEED, truth="never", backend="cpu"),
        progress=lambda _: None,
    )
    return root


@pytest.fixture(scope="module")
def cpu_runs(net: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {mode: _loop(tmp_path_factory.mktemp(f"cpu-{mode}"), net, mode, "cpu") for mode in MODES}


def _assert_same(got: Path, want: Path) -> None:
    for name in ("patterns.parquet", "rules.parquet"):
        if (want / "model" / name).exists():
            got_table, want_table = _table(got / "model" / name), _table(want / "model" / name)
            pd.testing.assert_frame_equal(got_table, want_table, obj=name)
    for path in sorted((want / "plan").glob("priors_scan_*.csv")):
        assert (got / "plan" / path.name).read_bytes() == path.read_bytes(), path.name
    pd.testing.assert_frame_equal(
        _table(got / "pred" / SHARDS_DIR), _table(want / "pred" / SHARDS_DIR), obj="predictions"
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_gpu_backend_equals_cpu(mode: str, net: Path, cpu_runs: dict[str, Path], tmp_path: Path) -> None:
    assert len(_table(cpu_runs[mode] / "pred" / SHARDS_DIR)) > 0
    _assert_same(_loop(tmp_path, net, mode, "gpu"), cpu_runs[mode])


def test_local_cuda_cluster_equals_one_process(net: Path, cpu_runs: dict[str, Path], tmp_path: Path) -> None:
    _assert_same(_loop(tmp_path, net, "compatible", "gpu", cluster="local-cuda"), cpu_runs["compatible"])

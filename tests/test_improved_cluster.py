"""Improved predict on ``--cluster``: the host partitions of the priors scan are predicted and sorted
on the cluster's workers, and the ranked predictions are those of one process, row for row."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gpsgpu import cli, schema
from gpsgpu.config import LearnConfig, PlanConfig, PredictConfig, SimulateConfig
from gpsgpu.distributed import SERIAL, Mapper
from gpsgpu.io.predictions import SHARDS_DIR
from gpsgpu.learn.ranked import learn_host_rules, learn_ranked_rules
from gpsgpu.pipelines import improved
from gpsgpu.pipelines.learn import run_learn
from gpsgpu.pipelines.plan import run_plan
from gpsgpu.pipelines.predict import run_predict
from gpsgpu.pipelines.simulate import run_sim_scan, run_simulate
from gpsgpu.predict.ranked import rank_partitions, rank_predictions
from tests.gps_data import make_priors, make_services

#: Priors services per partition in these tests (the default makes one partition of a small scan).
PARTITION_ROWS = 8000


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated Internet, an improved model of its seed, its plan and the priors scan."""
    root = tmp_path_factory.mktemp("improved-cluster")
    run_simulate(
        root / "net",
        SimulateConfig(hosts=20_000, seed_fraction=0.05, seed=3, backend="cpu"),
        progress=lambda _: None,
    )
    seed = [str(root / "net" / "seed.parquet")]
    run_learn(seed, root / "model", LearnConfig(mode="improved", backend="cpu"))
    run_plan(root / "model", root / "plan", PlanConfig())
    run_sim_scan(root / "net", root / "plan", root / "priors.parquet", backend="cpu")
    return root


def _spy_clusters(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What improved predict's clusters ran: one record per ``open_cluster``, with the partitions
    its mapper returned."""
    opened: list[dict[str, Any]] = []
    real = improved.open_cluster

    @contextlib.contextmanager
    def spy(spec: str = "none", *, workers: int = 0) -> Iterator[Mapper]:
        with real(spec, workers=workers) as mapper:
            record: dict[str, Any] = {"spec": spec, "distributed": mapper.distributed}
            record.update(n_workers=mapper.n_workers, parts=0)
            opened.append(record)
            imap = mapper.imap

            def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
                for result in imap(*args, **kwargs):
                    record["parts"] += 1
                    yield result

            # An instance attribute, removed on exit: SERIAL is left as it was.
            mapper.imap = counting  # type: ignore[method-assign]
            try:
                yield mapper
            finally:
                del mapper.imap

    monkeypatch.setattr(improved, "open_cluster", spy)
    return opened


@pytest.mark.slow
def test_improved_predict_on_a_local_cluster_is_the_one_process_ranking(
    loop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = _spy_clusters(monkeypatch)
    model, plan, priors = str(loop / "model"), str(loop / "plan"), str(loop / "priors.parquet")
    config = PredictConfig(plan=plan, backend="cpu", priors_per_partition=PARTITION_ROWS)
    run_predict(model, [priors], tmp_path / "none", config)
    try:  # worker processes, through the command line (the flag sets the partitions' size)
        cli.main(["-q", "predict", model, priors, "-o", str(tmp_path / "local"), "--plan", plan,
                  "--backend", "cpu", "--cluster", "local", "--workers", "2",
                  "--priors-per-partition", str(PARTITION_ROWS)])  # fmt: skip
    except SystemExit as exc:
        if exc.code:  # pragma: no cover - a failure
            pytest.fail(f"predict --cluster local: exit {exc.code}: {capsys.readouterr().err}")
    one = pd.read_parquet(tmp_path / "none" / SHARDS_DIR)
    local = pd.read_parquet(tmp_path / "local" / SHARDS_DIR)
    assert len(one) > 100 and (np.diff(one[schema.SCORE].to_numpy()) <= 0).all()
    pd.testing.assert_frame_equal(local, one)
    meta = {name: json.loads((tmp_path / name / "metadata.json").read_text()) for name in ("none", "local")}
    assert meta["none"]["counts"] == meta["local"]["counts"]
    assert (meta["local"]["config"]["cluster"], meta["local"]["config"]["workers"]) == ("local", 2)
    # The partitions came back from two worker processes, several of them.
    n_parts = -(-meta["none"]["counts"]["n_priors_services"] // PARTITION_ROWS)
    assert n_parts > 2
    assert opened == [
        {"spec": "none", "distributed": False, "n_workers": 1, "parts": n_parts},
        {"spec": "local", "distributed": True, "n_workers": 2, "parts": n_parts},
    ]


def test_improved_predict_retries_out_of_memory_with_smaller_partitions(
    loop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model, priors = str(loop / "model"), [str(loop / "priors.parquet")]
    config = PredictConfig(plan=str(loop / "plan"), backend="cpu", priors_per_partition=PARTITION_ROWS)
    run_predict(model, priors, tmp_path / "one", config)
    real, rows = improved.rank_partitions, []

    def short_of_memory(*args: Any, partition_rows: int, **kwargs: Any) -> Iterator[Any]:
        rows.append(partition_rows)
        for i, part in enumerate(real(*args, partition_rows=partition_rows, **kwargs)):
            if len(rows) == 1 and i == 1:  # the first try's second partition
                raise MemoryError("test")
            yield part

    monkeypatch.setattr(improved, "rank_partitions", short_of_memory)
    run_predict(model, priors, tmp_path / "retried", config)
    assert len(rows) == 2 and rows[1] < rows[0] <= PARTITION_ROWS
    assert "predict (improved): out of memory" in caplog.text
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "retried" / SHARDS_DIR), pd.read_parquet(tmp_path / "one" / SHARDS_DIR)
    )
    assert sorted(p.name for p in (tmp_path / "retried").iterdir()) == ["metadata.json", SHARDS_DIR]


@pytest.mark.parametrize("threads_cluster", [2], indirect=True, ids=lambda n: f"{n}-workers")
def test_rank_partitions_on_a_cluster_gives_the_serial_runs(threads_cluster: str) -> None:
    from dask.distributed import Client

    seed = make_services(400, seed=5)
    rules = learn_ranked_rules(seed, top_k=4, min_count=2, max_host_ports=10).rules
    priors = make_priors(seed, 700, seed=2)
    kwargs: dict[str, Any] = {
        "host_rules": learn_host_rules(seed, max_host_ports=10),
        "skip_hosts": np.unique(seed[schema.IP].to_numpy()),
        "partition_rows": 113,
    }
    with Client(threads_cluster) as client:
        mapper = Mapper(client)
        for by_port in (False, True):
            want = list(rank_partitions(priors, rules, by_port=by_port, mapper=SERIAL, **kwargs))
            assert len(want) > 5 and sum(map(len, want)) > 500
            got = list(rank_partitions(priors, rules, by_port=by_port, mapper=mapper, **kwargs))
            assert len(got) == len(want)
            for left, right in zip(got, want, strict=True):
                pd.testing.assert_frame_equal(left, right)
    # The in-memory ranking (rounds and campaigns) is unchanged by the tasks' split.
    whole = rank_predictions(priors, rules, **kwargs)
    assert len(whole) == sum(map(len, want))

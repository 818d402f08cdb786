"""``--cluster``: learn and predict give the same outputs on a Dask cluster as in one process.

Also: a scheduler address, ``local-cuda`` without a GPU, and the out-of-memory retry (a fake
CuPy ``OutOfMemoryError`` injected on the CPU).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from gps_data import make_priors, make_services

from gpsgpu import cli, distributed
from gpsgpu.config import LearnConfig, PredictConfig
from gpsgpu.errors import UsageError
from gpsgpu.io.parquet import write_services
from gpsgpu.io.predictions import SHARDS_DIR
from gpsgpu.pipelines import learn as learn_pipeline
from gpsgpu.pipelines import predict as predict_pipeline
from gpsgpu.pipelines.learn import run_learn
from gpsgpu.pipelines.predict import run_predict
from gpsgpu.progress import Progress

HITRATE, STEP = 0.001, 20


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributed")
    seed = make_services(400, seed=31)
    priors = make_priors(seed, 400, seed=32)
    write_services(seed, root / "seed.parquet")
    write_services(priors, root / "priors.parquet")
    return {"root": root, "seed": root / "seed.parquet", "priors": root / "priors.parquet"}


def _learn(inputs: dict[str, Path], out: Path, **flags: object) -> pd.DataFrame:
    run_learn([str(inputs["seed"])], out, LearnConfig(hitrate=HITRATE, step=STEP, **flags))  # type: ignore[arg-type]
    return pq.read_table(out / "patterns.parquet").to_pandas()


def _predict(inputs: dict[str, Path], model: Path, out: Path, **flags: object) -> pd.DataFrame:
    run_predict(model, [str(inputs["priors"])], out, PredictConfig(**flags))  # type: ignore[arg-type]
    table = pq.read_table(out / SHARDS_DIR).to_pandas()
    return table.sort_values(["ip", "port"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(inputs: dict[str, Path]) -> dict[str, object]:
    """Model and predictions of one process (``--cluster none``), 1 partition."""
    model = inputs["root"] / "model-ref"
    patterns = _learn(inputs, model)
    predictions = _predict(inputs, model, inputs["root"] / "pred-ref", priors_per_partition=10**9)
    assert len(patterns) > 0 and len(predictions) > 0
    return {"model": model, "patterns": patterns, "predictions": predictions}


@pytest.mark.parametrize("threads_cluster", [1, 2, 4], indirect=True, ids=lambda n: f"{n}-workers")
def test_clusters_of_1_2_4_workers_give_the_same_patterns_and_predictions(
    inputs: dict[str, Path], reference: dict[str, object], tmp_path: Path, threads_cluster: str
) -> None:
    patterns = _learn(inputs, tmp_path / "model", cluster=threads_cluster, partitions=3)
    pd.testing.assert_frame_equal(patterns, reference["patterns"])  # type: ignore[arg-type]
    predictions = _predict(
        inputs, tmp_path / "model", tmp_path / "pred", cluster=threads_cluster, priors_per_partition=300
    )
    pd.testing.assert_frame_equal(predictions, reference["predictions"])  # type: ignore[arg-type]


@pytest.mark.parametrize("threads_cluster", [2], indirect=True)
def test_scheduler_address(
    inputs: dict[str, Path], reference: dict[str, object], tmp_path: Path, threads_cluster: str
) -> None:
    address = threads_cluster
    assert address.startswith("tcp://127.0.0.1:")
    patterns = _learn(inputs, tmp_path / "model", cluster=address, partitions=2)
    pd.testing.assert_frame_equal(patterns, reference["patterns"])  # type: ignore[arg-type]
    predictions = _predict(inputs, tmp_path / "model", tmp_path / "pred", cluster=address)
    pd.testing.assert_frame_equal(predictions, reference["predictions"])  # type: ignore[arg-type]


def test_cli_cluster_flag(
    inputs: dict[str, Path],
    reference: dict[str, object],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tmp_path / "model"
    args = ["learn", str(inputs["seed"]), "-o", str(model), "--hitrate", str(HITRATE), "--step", str(STEP)]
    monkeypatch.setattr(sys, "argv", ["gpsgpu", "-q", *args, "--cluster", "local", "--workers", "2"])
    try:
        cli.main()
    except SystemExit as exc:  # pragma: no cover - a failure
        pytest.fail(f"exit {exc.code}: {capsys.readouterr().err}")
    patterns = pq.read_table(model / "patterns.parquet").to_pandas()
    pd.testing.assert_frame_equal(patterns, reference["patterns"])  # type: ignore[arg-type]


def test_bad_cluster_values_are_one_line_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError, match="--cluster must be"):
        LearnConfig(cluster="bogus")
    with pytest.raises(UsageError, match="--workers"):
        PredictConfig(workers=-1)
    # local-cuda without a GPU (or without dask-cuda) is a one-line error, before any work.
    monkeypatch.setattr("gpsgpu.backend.cuda_device_count", lambda: 0)
    with (
        pytest.raises(UsageError, match="local-cuda needs an NVIDIA GPU"),
        distributed.open_cluster("local-cuda"),
    ):
        pass  # pragma: no cover
    seed = tmp_path / "seed.parquet"
    write_services(make_services(20, seed=1), seed)
    monkeypatch.setattr(
        sys,
        "argv",
        ["gpsgpu", "-q", "learn", str(seed), "-o", str(tmp_path / "m"), "--cluster", "local-cuda"],
    )
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1 and "local-cuda" in err
    assert not (tmp_path / "m").exists()


class OutOfMemoryError(MemoryError):
    """Stands for ``cupy.cuda.memory.OutOfMemoryError`` (matched by name, like the real one)."""


class _RmmLike(RuntimeError):
    """An unrelated error: never retried."""


def test_oom_detection() -> None:
    assert distributed.is_out_of_memory(OutOfMemoryError("out of memory allocating 1 GiB"))
    assert distributed.is_out_of_memory(MemoryError("std::bad_alloc: out_of_memory: RMM failure"))
    assert not distributed.is_out_of_memory(_RmmLike("boom"))


def test_retry_on_oom_doubles_partitions_and_gives_up() -> None:
    seen: list[int] = []

    def stage(n: int) -> int:
        seen.append(n)
        if n < 8:
            raise OutOfMemoryError("fake")
        return n

    assert distributed.retry_on_oom(stage, 1, what="x") == 8
    assert seen == [1, 2, 4, 8]
    with pytest.raises(OutOfMemoryError):
        distributed.retry_on_oom(stage, 1, what="x", max_retries=2)
    with pytest.raises(_RmmLike):
        distributed.retry_on_oom(lambda n: (_ for _ in ()).throw(_RmmLike("no")), 1, what="x")


def test_learn_and_predict_retry_after_out_of_memory(
    inputs: dict[str, Path],
    reference: dict[str, object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_learn = learn_pipeline.learn_patterns

    def learn_small_partitions_only(services: object, **kwargs: object) -> object:
        if kwargs["n_partitions"] < 4:  # type: ignore[operator]
            raise OutOfMemoryError("out of memory allocating 4,294,967,296 bytes")
        return real_learn(services, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(learn_pipeline, "learn_patterns", learn_small_partitions_only)
    with caplog.at_level(logging.WARNING, logger="gpsgpu.distributed"):
        patterns = _learn(inputs, tmp_path / "model")
    pd.testing.assert_frame_equal(patterns, reference["patterns"])  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert lines == [
        "learn: out of memory with 1 partition(s) (OutOfMemoryError); retrying with 2 smaller partitions",
        "learn: out of memory with 2 partition(s) (OutOfMemoryError); retrying with 4 smaller partitions",
    ]

    caplog.clear()
    real_partition = predict_pipeline._predict_partition
    calls = {"n": 0}

    def fail_on_big_partitions(part: pd.DataFrame, **shared: object) -> object:
        calls["n"] += 1
        if len(part) > 700:
            raise OutOfMemoryError("fake")
        return real_partition(part, **shared)

    monkeypatch.setattr(predict_pipeline, "_predict_partition", fail_on_big_partitions)
    with caplog.at_level(logging.WARNING, logger="gpsgpu.distributed"):
        predictions = _predict(inputs, tmp_path / "model", tmp_path / "pred", priors_per_partition=10**9)
    pd.testing.assert_frame_equal(predictions, reference["predictions"])  # type: ignore[arg-type]
    assert any("predict: out of memory with 1 partition(s)" in r.getMessage() for r in caplog.records)
    assert calls["n"] > 1


@pytest.mark.parametrize("threads_cluster", [2], indirect=True)
def test_mapper_keep_gather_and_reduce_on_a_cluster_as_in_one_process(threads_cluster: str) -> None:
    from dask.distributed import Client

    def square(x: int, *, plus: int) -> int:
        return x * x + plus

    def total(values: list[int]) -> int:
        return sum(values)

    serial = distributed.SERIAL
    kept = serial.keep(square, range(7), plus=1)
    assert serial.gather(kept) == [x * x + 1 for x in range(7)]
    assert serial.reduce(total, kept) == sum(x * x + 1 for x in range(7))
    assert serial.map(lambda x, y: x - y, [5, 6], [1, 2]) == [4, 4]
    with Client(threads_cluster) as client:
        mapper = distributed.Mapper(client)
        handles = mapper.keep(square, range(7), plus=1)
        assert all(distributed._is_future(h) for h in handles)  # results stay on the workers
        assert mapper.gather(handles) == serial.gather(kept)
        for fan_in in (2, 3, 8):
            assert mapper.reduce(total, handles, fan_in=fan_in) == serial.reduce(total, kept)
        # Kept results feed later tasks where they live, with per-item arguments beside them.
        assert mapper.map(lambda x, y: x - y, handles, range(7)) == [x * x + 1 - x for x in range(7)]
        assert mapper.reduce(total, []) == 0


@pytest.mark.parametrize("threads_cluster", [2], indirect=True)
def test_learn_keeps_its_partitions_on_the_workers(
    inputs: dict[str, Path],
    reference: dict[str, object],
    tmp_path: Path,
    threads_cluster: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each seed partition goes to a worker once and is indexed and counted there: no partition,
    frame or index ever comes back to the client (only keys, sums and predictors do)."""
    from dask.distributed import Client

    from gpsgpu.learn.seed import SeedPartition

    scattered: list[str] = []
    gathered: list[str] = []
    real_scatter, real_gather = Client.scatter, Client.gather

    def names(value: object) -> list[str]:
        if isinstance(value, list | tuple):
            return [n for v in value for n in names(v)]
        if isinstance(value, dict):
            return [n for v in value.values() for n in names(v)]
        return [type(value).__name__]

    def scatter(self: Client, data: object, *args: object, **kwargs: object) -> object:
        scattered.extend(names(data))
        return real_scatter(self, data, *args, **kwargs)

    def gather(self: Client, futures: object, *args: object, **kwargs: object) -> object:
        result = real_gather(self, futures, *args, **kwargs)
        gathered.extend(names(result))
        return result

    monkeypatch.setattr(Client, "scatter", scatter)
    monkeypatch.setattr(Client, "gather", gather)
    patterns = _learn(inputs, tmp_path / "model", cluster=threads_cluster, partitions=3)
    pd.testing.assert_frame_equal(patterns, reference["patterns"])  # type: ignore[arg-type]
    assert scattered.count("DataFrame") == 3  # each partition's rows, once
    assert SeedPartition.__name__ not in gathered and "DataFrame" not in gathered
    assert gathered  # keys, sums and predictors did come back


def test_cluster_chatter_reaches_stderr_only_with_verbose() -> None:
    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "Start Nanny at: %s", ("tcp://x",), None)

    assert not cli._quiet_cluster(record("distributed.nanny", logging.INFO))
    assert not cli._quiet_cluster(record("distributed.scheduler", logging.INFO))
    assert cli._quiet_cluster(record("distributed.worker", logging.WARNING))
    assert cli._quiet_cluster(record("gpsgpu.distributed", logging.INFO))  # ours: "cluster local: 2 workers"
    handler = logging.StreamHandler()
    cli._setup_logging(0, None)
    quiet = logging.getLogger().handlers[0]
    assert cli._quiet_cluster in quiet.filters
    cli._setup_logging(1, None)
    assert cli._quiet_cluster not in logging.getLogger().handlers[0].filters
    logging.basicConfig(handlers=[handler], force=True)


@pytest.mark.parametrize("threads_cluster", [2], indirect=True)
def test_workers_that_share_the_files_read_their_own_partitions(
    inputs: dict[str, Path],
    reference: dict[str, object],
    tmp_path: Path,
    threads_cluster: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a local cluster (workers that see this machine's files) no seed or priors partition is
    read by the client or sent from it: each worker reads its own from the Parquet file. Learn and
    predict in both modes give the one-process outputs."""
    from dask.distributed import Client

    from gpsgpu.io.partitions import ParquetHostPartitions
    from gpsgpu.pipelines import improved as improved_pipeline

    real_open = distributed.open_cluster

    @contextlib.contextmanager
    def local_cluster(spec: str = "none", *, workers: int = 0) -> Iterator[distributed.Mapper]:
        with real_open(spec, workers=workers) as mapper:
            mapper.shares_files = True  # the threads cluster runs on this machine
            yield mapper

    for module in (learn_pipeline, predict_pipeline, improved_pipeline):
        monkeypatch.setattr(module, "open_cluster", local_cluster)
    scattered: list[str] = []
    real_scatter = Client.scatter

    def scatter(self: Client, data: object, *args: object, **kwargs: object) -> object:
        scattered.extend(type(v).__name__ for v in (data if isinstance(data, list) else [data]))
        return real_scatter(self, data, *args, **kwargs)

    def read_here(self: ParquetHostPartitions, n_partitions: int) -> object:
        raise AssertionError("a partition was read by the client")

    bars: list[Progress] = []

    class Recorded(Progress):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(Client, "scatter", scatter)
    monkeypatch.setattr(ParquetHostPartitions, "partitions", read_here)
    patterns = _learn(inputs, tmp_path / "model", cluster=threads_cluster, partitions=3)
    pd.testing.assert_frame_equal(patterns, reference["patterns"])  # type: ignore[arg-type]
    monkeypatch.setattr(predict_pipeline, "Progress", Recorded)
    predictions = _predict(
        inputs, tmp_path / "model", tmp_path / "pred", cluster=threads_cluster, priors_per_partition=300
    )
    pd.testing.assert_frame_equal(predictions, reference["predictions"])  # type: ignore[arg-type]
    assert "DataFrame" not in scattered
    # The workers' partitions advanced the predict bar, each once, as they came back.
    n_priors = pq.ParquetFile(inputs["priors"]).metadata.num_rows
    assert [(bar.phase, bar.done, bar.total) for bar in bars] == [("predict", n_priors, n_priors)]
    # Improved mode: its ranked predictor's partitions too (the whole ranking equal).
    monkeypatch.undo()
    run_learn(
        [str(inputs["seed"])], tmp_path / "improved", LearnConfig(hitrate=HITRATE, step=STEP, mode="improved")
    )
    ranked = {}
    for name, cluster in (("none", "none"), ("workers", threads_cluster)):
        if cluster != "none":
            for module in (predict_pipeline, improved_pipeline):
                monkeypatch.setattr(module, "open_cluster", local_cluster)
            monkeypatch.setattr(ParquetHostPartitions, "partitions", read_here)
            monkeypatch.setattr(improved_pipeline, "Progress", Recorded)
            bars.clear()
        out = tmp_path / f"ranked-{name}"
        run_predict(tmp_path / "improved", [str(inputs["priors"])], out, PredictConfig(cluster=cluster))
        ranked[name] = pq.read_table(out / SHARDS_DIR).to_pandas()
    assert len(ranked["none"]) > 0
    pd.testing.assert_frame_equal(ranked["workers"], ranked["none"])
    assert [(bar.phase, bar.done) for bar in bars] == [("predict (improved)", n_priors)]

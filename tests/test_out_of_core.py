"""Out of core on one device: a services Parquet file is read one host partition at a time, and an
out-of-memory error is retried with smaller partitions, with one line telling the user; the
results are those of the whole-table path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gps_data import make_priors, make_services

from gpsgpu import cli
from gpsgpu.backend import Backend
from gpsgpu.errors import InputError
from gpsgpu.io import partitions as io_partitions
from gpsgpu.io.parquet import read_services, write_services, write_table
from gpsgpu.io.partitions import ParquetHostPartitions
from gpsgpu.io.predictions import SHARDS_DIR
from gpsgpu.partition import split_by_host
from gpsgpu.pipelines.engine_io import open_scan

HITRATE, STEP = "0.001", "20"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ooc")
    seed = make_services(400, seed=41)
    write_services(seed, root / "seed.parquet")
    write_services(make_priors(seed, 400, seed=42), root / "priors.parquet")
    # Small row groups, so that partitions are gathered across many of them.
    table = pq.read_table(root / "seed.parquet")
    write_table(table, root / "seed-small-groups.parquet", row_group_size=97)
    return {"root": root, "seed": root / "seed.parquet", "priors": root / "priors.parquet",
            "small": root / "seed-small-groups.parquet"}  # fmt: skip


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("name", ["seed", "small"])
def test_partitions_read_from_parquet_equal_the_split_of_the_whole_table(
    files: dict[str, Path], n: int, name: str
) -> None:
    whole = read_services(files[name], Backend.CPU)
    source = ParquetHostPartitions(files[name], Backend.CPU, batch_rows=50)
    assert len(source) == len(whole)
    streamed = list(split_by_host(source, n_partitions=n))
    expected = list(split_by_host(whole, n_partitions=n))
    assert len(streamed) == n
    for got, want in zip(streamed, expected, strict=True):
        pd.testing.assert_frame_equal(got, want)


def test_a_partition_never_needs_the_whole_table(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real = ParquetHostPartitions._frame

    def record(self: ParquetHostPartitions, table: object) -> object:
        sizes.append(table.num_rows)  # type: ignore[attr-defined]
        return real(self, table)  # type: ignore[arg-type]

    monkeypatch.setattr(ParquetHostPartitions, "_frame", record)
    source = ParquetHostPartitions(files["seed"], Backend.CPU, batch_rows=64)
    assert sum(len(p) for p in source.partitions(4)) == len(source)
    assert max(sizes) < 0.4 * len(source)


def test_open_scan_checks_the_table_before_any_work(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": [1]}), bad)
    with pytest.raises(InputError, match=r"bad\.parquet"):
        open_scan([str(bad)], backend=Backend.CPU, what="seed")


def _run(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setattr(sys, "argv", ["gpsgpu", *args])
    try:
        cli.main()
    except SystemExit as exc:  # pragma: no cover - a failure
        pytest.fail(f"exit {exc.code}: {capsys.readouterr().err}")
    return capsys.readouterr().err


def _learn_predict(
    files: dict[str, Path], out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    model, pred = out / "model", out / "pred"
    err = _run(["learn", str(files["seed"]), "-o", str(model), "--hitrate", HITRATE, "--step", STEP,
                "--backend", "cpu"], monkeypatch, capsys)  # fmt: skip
    err += _run(["predict", str(model), str(files["priors"]), "-o", str(pred), "--backend", "cpu"],
                monkeypatch, capsys)  # fmt: skip
    patterns = pq.read_table(model / "patterns.parquet").to_pandas()
    predictions = (
        pq.read_table(pred / SHARDS_DIR).to_pandas().sort_values(["ip", "port"]).reset_index(drop=True)
    )
    return patterns, predictions, err


def test_out_of_memory_on_big_partitions_is_retried_with_smaller_ones(
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    patterns, predictions, err = _learn_predict(files, tmp_path / "ref", monkeypatch, capsys)
    assert "out of memory" not in err and len(patterns) > 0 and len(predictions) > 0

    # A device that holds at most 40% of a table: bigger partitions fail as cupy/rmm would.
    real = ParquetHostPartitions._frame
    limit = 0.4 * len(ParquetHostPartitions(files["seed"], Backend.CPU))

    def small_only(self: ParquetHostPartitions, table: object) -> object:
        if table.num_rows > limit:  # type: ignore[attr-defined]
            raise MemoryError(f"out of memory allocating {table.num_rows} rows")  # type: ignore[attr-defined]
        return real(self, table)  # type: ignore[arg-type]

    monkeypatch.setattr(io_partitions.ParquetHostPartitions, "_frame", small_only)
    got_patterns, got_predictions, err = _learn_predict(files, tmp_path / "ooc", monkeypatch, capsys)
    pd.testing.assert_frame_equal(got_patterns, patterns)
    pd.testing.assert_frame_equal(got_predictions, predictions)
    lines = [line for line in err.splitlines() if "out of memory" in line]
    assert lines[:2] == [
        "gpsgpu: learn: out of memory with 1 partition(s) (MemoryError); retrying with 2 smaller partitions",
        "gpsgpu: learn: out of memory with 2 partition(s) (MemoryError); retrying with 4 smaller partitions",
    ]
    assert any(line.startswith("gpsgpu: predict: out of memory with 1 partition(s)") for line in lines)
    assert "Traceback" not in err

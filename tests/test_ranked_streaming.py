"""Improved predict's streamed ranking: sorted runs merged from disk give the in-memory ranking, row
for row, and the streamed Parquet files are the files written whole, byte for byte."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from gpsgpu import schema
from gpsgpu.io.parquet import write_table
from gpsgpu.io.predictions import PredictionWriter, held_stream, write_held
from gpsgpu.io.runs import ParquetStream, RunStore, read_batches
from gpsgpu.learn.ranked import learn_host_rules, learn_ranked_rules
from gpsgpu.predict.ranked import (
    held_keep,
    merge_held,
    merge_ranked,
    rank_partitions,
    rank_predictions,
    scanned_keys,
    sort_ranked,
    union_sorted_keys,
)
from tests.gps_data import make_priors, make_services


def _predictions(n: int, rng: np.random.Generator, *, n_scores: int = 7) -> pd.DataFrame:
    """Distinct services with few distinct scores (many ties), in no order."""
    key = rng.choice(1 << 40, size=n, replace=False).astype(np.uint64)
    ip, port = schema.unpack_service(key)
    return pd.DataFrame(
        {
            schema.IP: ip,
            schema.PORT: port,
            schema.SCORE: rng.choice(np.linspace(0.001, 0.9, n_scores).astype(np.float32), size=n),
            schema.N_RULES: rng.integers(1, 9, size=n).astype(np.uint32),
        }
    )


def _batches(frame: pd.DataFrame, rng: np.random.Generator) -> list[pd.DataFrame]:
    """A run cut at random places (empty batches included)."""
    cuts = np.sort(rng.integers(0, len(frame) + 1, size=rng.integers(0, 6)))
    edges = [0, *cuts.tolist(), len(frame)]
    return [frame.iloc[a:b].reset_index(drop=True) for a, b in itertools.pairwise(edges)]


def _in_memory(frame: pd.DataFrame, by_port: bool) -> pd.DataFrame:
    """The orders of rank_predictions (score desc, ip, port) and merge_held (score desc, port, ip)."""
    ip, port = frame[schema.IP].to_numpy(), frame[schema.PORT].to_numpy()
    neg = -frame[schema.SCORE].to_numpy(np.float64)
    order = np.lexsort((ip, port, neg)) if by_port else np.lexsort((schema.pack_service(ip, port), neg))
    return frame.iloc[order].reset_index(drop=True)


@pytest.mark.parametrize("by_port", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_merged_runs_are_the_in_memory_ranking(seed: int, by_port: bool) -> None:
    rng = np.random.default_rng(seed)
    whole = _predictions(int(rng.integers(0, 3000)), rng, n_scores=int(rng.integers(1, 9)))
    parts = np.array_split(rng.permutation(len(whole)), int(rng.integers(1, 9)))
    runs = [_batches(sort_ranked(whole.iloc[p].reset_index(drop=True), by_port=by_port), rng) for p in parts]
    blocks = list(merge_ranked(runs, by_port=by_port))
    got = pd.concat([whole.iloc[:0], *blocks], ignore_index=True)
    pd.testing.assert_frame_equal(got, _in_memory(whole, by_port))


def test_runs_on_disk_merge_to_the_in_memory_ranking(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    whole = _predictions(5000, rng)
    with RunStore(tmp_path / "runs") as store:
        for part in np.array_split(rng.permutation(len(whole)), 5):
            store.add(sort_ranked(whole.iloc[part].reset_index(drop=True)))
        store.add(whole.iloc[:0])  # an empty run is no run
        assert len(store.paths) == 5 and store.n_rows == 5000
        got = pd.concat(merge_ranked(store.readers(batch_rows=333)), ignore_index=True)
    assert not (tmp_path / "runs").exists()
    pd.testing.assert_frame_equal(got, _in_memory(whole, False))


def test_streamed_ranking_of_several_partitions_is_rank_predictions() -> None:
    seed = make_services(500, seed=5)
    rules = learn_ranked_rules(seed, top_k=4, min_count=2, max_host_ports=10).rules
    host_rules = learn_host_rules(seed, max_host_ports=10)
    priors = make_priors(seed, 900, seed=2)
    known = np.sort(
        schema.pack_service(seed[schema.IP].to_numpy(np.uint32), seed[schema.PORT].to_numpy(np.uint16))
    )
    known = np.unique(known)
    kwargs = {"known": known, "host_rules": host_rules, "skip_hosts": np.unique(seed[schema.IP].to_numpy())}
    want = rank_predictions(priors, rules, **kwargs)
    assert len(want) > 1000 and want[schema.SCORE].duplicated().any()  # ties to break
    parts = list(rank_partitions(priors, rules, partition_rows=97, **kwargs))
    assert len(parts) > 5
    got = pd.concat(merge_ranked([iter([p]) for p in parts]), ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    # merge_held's order: a round's predictions and a backlog, filtered and merged as the pipeline
    # streams them (runs of both, in score, port, ip order).
    held = want.iloc[::3].assign(**{schema.SCORE: np.float32(0.0005)}).reset_index(drop=True)
    held = pd.concat([held, _predictions(200, np.random.default_rng(1))], ignore_index=True)
    preds = want.iloc[len(want) // 2 :].reset_index(drop=True)  # what this round predicts
    probed = np.unique(
        schema.pack_service(held[schema.IP].to_numpy()[-50:], held[schema.PORT].to_numpy()[-50:])
    )
    scanned = scanned_keys(
        np.array([443, 80]), np.array([0x0A000000, 0x0B000000], np.uint32), np.array([8, 8])
    )
    merged = merge_held(preds, held, known=probed, scanned=scanned)
    predicted = np.unique(schema.pack_service(preds[schema.IP].to_numpy(), preds[schema.PORT].to_numpy()))
    keep = held_keep(held, predicted=predicted, known=probed, scanned=scanned)
    runs = [iter([sort_ranked(preds.iloc[i::4].reset_index(drop=True), by_port=True)]) for i in range(4)] + [
        iter([sort_ranked(held[keep].iloc[i::2].reset_index(drop=True), by_port=True)]) for i in range(2)
    ]
    got = pd.concat(merge_ranked(runs, by_port=True), ignore_index=True)
    pd.testing.assert_frame_equal(got, merged)


def test_union_of_sorted_keys() -> None:
    rng = np.random.default_rng(3)
    for n_a, n_b in ((0, 0), (0, 5), (100, 7), (7, 100), (1000, 1000)):
        a = np.unique(rng.integers(0, 3000, n_a).astype(np.uint64))
        b = np.unique(rng.integers(0, 3000, n_b).astype(np.uint64))
        np.testing.assert_array_equal(union_sorted_keys(a, b), np.union1d(a, b))


@pytest.mark.parametrize("n_rows", [0, 1, 999, 1000, 2500])
def test_parquet_stream_is_the_file_written_whole(tmp_path: Path, n_rows: int) -> None:
    rng = np.random.default_rng(n_rows)
    whole = _predictions(n_rows, rng)
    write_table(schema.frame_to_arrow(whole), tmp_path / "whole.parquet", row_group_size=1000)
    with ParquetStream(tmp_path / "streamed.parquet", whole.iloc[:0], row_group_size=1000) as stream:
        for batch in _batches(whole, rng):
            stream.write(batch)
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    got = pd.concat([whole.iloc[:0], *read_batches(tmp_path / "streamed.parquet", batch_rows=300)])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), whole)


def test_streamed_shard_and_held_table_are_the_files_written_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    whole = _predictions(3000, rng).assign(**{schema.ROUND: np.uint16(1)})
    for name in ("whole", "streamed"):
        (tmp_path / name).mkdir()
    with PredictionWriter(tmp_path / "whole", export="gps") as writer:
        writer.write(whole)
    with PredictionWriter(tmp_path / "streamed", export="gps") as writer:
        for batch in [whole.iloc[:0], *_batches(whole, rng)]:
            writer.append(batch, empty=whole.iloc[:0])
    assert writer.n_shards == 1 and writer.n_predictions == 3000
    for path in ("parts/part-00000.parquet", "predictions.txt"):
        assert (tmp_path / "streamed" / path).read_bytes() == (tmp_path / "whole" / path).read_bytes()
    held = whole.drop(columns=[schema.ROUND])
    write_held(held, tmp_path / "whole")
    with held_stream(tmp_path / "streamed") as stream:
        for batch in _batches(held, rng):
            stream.write(batch)
    assert pq.read_table(tmp_path / "streamed" / "held.parquet").num_rows == 3000
    assert (tmp_path / "streamed/held.parquet").read_bytes() == (tmp_path / "whole/held.parquet").read_bytes()


def test_an_aborted_stream_leaves_no_file(tmp_path: Path) -> None:
    frame = _predictions(10, np.random.default_rng(0))
    with (
        pytest.raises(ValueError, match="boom"),
        ParquetStream(tmp_path / "t.parquet", frame.iloc[:0]) as stream,
    ):
        stream.write(frame)
        raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("by_port", [False, True])
def test_sort_ranked_of_service_ordered_predictions_is_the_lexsort(by_port: bool) -> None:
    """A partition's predictions come sorted by service: the stable sort by score's bits alone gives
    the two-key order; scores that are not numbers >= +0 (-0.0, NaN) take the lexsort."""
    rng = np.random.default_rng(11)
    preds = _predictions(50_000, rng, n_scores=40)
    key = schema.pack_service(preds[schema.IP].to_numpy(), preds[schema.PORT].to_numpy())
    preds = preds.iloc[np.argsort(key)].reset_index(drop=True)
    score = preds[schema.SCORE].to_numpy(np.float64)
    ip, port = preds[schema.IP].to_numpy(np.uint64), preds[schema.PORT].to_numpy(np.uint64)
    tie = (port << np.uint64(32)) | ip if by_port else (ip << np.uint64(16)) | port
    expected = preds.iloc[np.lexsort((tie, -score))].reset_index(drop=True)
    pd.testing.assert_frame_equal(sort_ranked(preds, by_port=by_port), expected)
    odd = preds.assign(**{schema.SCORE: preds[schema.SCORE].where(preds.index % 97 != 0, np.float32(-0.0))})
    ranked = sort_ranked(odd, by_port=by_port)
    assert (ranked[schema.SCORE].to_numpy()[-((len(odd) + 96) // 97) :] == 0).all()  # the zeros last

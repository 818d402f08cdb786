"""The lazy feature dictionary and the block-at-a-time passes equal what they replace."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from gps_data import make_services

from gpsgpu import schema
from gpsgpu.backend import Backend, to_numpy
from gpsgpu.features import feature_arrays_of_table, strings
from gpsgpu.features.strings import ComposedStrings, FeatureStrings
from gpsgpu.ops import ops_for


def _dictionary(backend: Backend, rng: np.random.Generator) -> tuple[FeatureStrings, list[str]]:
    """A dictionary of a built part and both kinds of crosses, and its strings built in Python."""
    ops = ops_for(backend)
    xp = ops.namespace()
    base = [f"http line: Server: {'x' * int(n)}{k}" for k, n in enumerate(rng.integers(0, 40, 300))]
    c16_at = rng.integers(0, len(base), 5000)
    c16_prefix = (rng.integers(0, 1 << 16, 5000) << 16).astype(np.uint32)
    ca_at = rng.integers(0, len(base), 4000)
    ca_asn = rng.integers(1, 1 << 32, 4000, dtype=np.uint64).astype(np.uint32)
    tail = ["L4", "s16: 0a000000", "caf\u00e9"]
    text = ops.text_from_arrow(pa.array(base, pa.large_string()))
    parts = [
        text,
        ComposedStrings("16:", text, xp.asarray(c16_at), "-", xp.asarray(c16_prefix), hexadecimal=True),
        ComposedStrings("asn:", text, xp.asarray(ca_at), "-asn: ", xp.asarray(ca_asn)),
        ops.text_from_arrow(pa.array([], pa.large_string())),
        ops.text_from_arrow(pa.array(tail, pa.large_string())),
    ]
    expected = (
        base
        + [f"16:{base[a]}-{int(p):08x}" for a, p in zip(c16_at, c16_prefix, strict=True)]
        + [f"asn:{base[a]}-asn: {int(n)}" for a, n in zip(ca_at, ca_asn, strict=True)]
        + tail
    )
    return FeatureStrings(parts, backend), expected


def _texts(backend: Backend, array: object) -> list[str]:
    return ops_for(backend).text_to_arrow(array).to_pylist()


def test_composed_strings_build_hash_and_take_like_built_ones(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(strings, "BLOCK", 1000)  # several blocks per cross
    rng = np.random.default_rng(7)
    dictionary, expected = _dictionary(backend, rng)
    xp = ops_for(backend).namespace()
    assert len(dictionary) == len(expected)
    assert _texts(backend, dictionary.materialize()) == expected
    keys = np.array([xxhash.xxh64_intdigest(s.encode(), schema.FKEY_SEED) for s in expected], np.uint64)
    assert np.array_equal(to_numpy(dictionary.keys(schema.FKEY_SEED)), keys)
    # Any order, repeats, every part.
    index = rng.integers(0, len(expected), 3000)
    assert _texts(backend, dictionary.take(xp.asarray(index))) == [expected[i] for i in index]
    in_order = np.sort(index)
    assert _texts(backend, dictionary.take(xp.asarray(in_order))) == [expected[i] for i in in_order]
    assert _texts(backend, dictionary.take(xp.zeros(0, dtype=xp.int64))) == []
    # A subset stays composed and gives the same strings; concatenation lays dictionaries end to end.
    kept = np.unique(rng.integers(0, len(expected), 2000))
    subset = dictionary.subset(xp.asarray(kept))
    assert _texts(backend, subset.materialize()) == [expected[i] for i in kept]
    both = FeatureStrings.concat([subset, dictionary], backend)
    assert _texts(backend, both.take(xp.asarray([0, len(kept), len(kept) + 1]))) == [
        expected[kept[0]],
        expected[0],
        expected[1],
    ]


def test_feature_arrays_strings_and_keys_agree_on_every_preset() -> None:
    table = schema.frame_to_arrow(make_services(400, seed=11))
    for preset in ("gps2022", "extended"):
        arrays = feature_arrays_of_table(table, preset=preset)
        names = arrays.strings.materialize().to_pylist()
        assert len(set(names)) == len(names) == arrays.n_features
        keys = np.array([xxhash.xxh64_intdigest(s.encode(), schema.FKEY_SEED) for s in names], np.uint64)
        assert np.array_equal(arrays.fkeys, keys)
        # Crosses are kept composed: the dictionary holds fewer built bytes than its strings.
        assert any(isinstance(p, ComposedStrings) for p in arrays.strings.parts)


def test_take_over_writes_the_gather_over_its_index() -> None:
    from gpsgpu.ops import cpu

    rng = np.random.default_rng(3)
    values = rng.integers(-5, 1 << 40, 1000)
    index = rng.integers(0, 1000, 5000)
    expected = values[index]
    out = cpu.take_over(values, index)
    assert out is index and np.array_equal(out, expected)


def test_block_passes_equal_whole_array_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The row order, row selection, gathers, unpacking and the chunking check, a few rows per block
    and in one block, in both modes' settings."""
    from gpsgpu.features import gps2022
    from gpsgpu.learn import counts, seed
    from gpsgpu.learn.patterns import learn_patterns
    from gpsgpu.ops import cpu

    frame = make_services(400, seed=5)
    whole = learn_patterns(frame, keep_counts=True, workers=1, chunk_pairs=1 << 12)
    ranked = learn_patterns(frame, workers=1, top_k=3, min_count=2, max_host_ports=32, supports=True)
    monkeypatch.setattr(counts, "_ROW_BLOCK", 37)
    monkeypatch.setattr(counts, "_PACK_BLOCK", 53)
    monkeypatch.setattr(seed, "_COMPACT_BLOCK", 41)
    monkeypatch.setattr(cpu, "_TAKE_BLOCK", 29)
    monkeypatch.setattr(gps2022, "_UNPACK_BLOCK", 31)
    chunk_sizes = []

    def small_chunks(ops: object, chunk_pairs: int, total: int, workers: int) -> int:
        chunk_sizes.append(total)
        return 500  # many chunks of whole gid ranges, cut by the sorted path

    monkeypatch.setattr(counts, "_balanced", small_chunks)
    blocks = learn_patterns(frame, keep_counts=True, workers=1, chunk_pairs=1 << 12)
    for name in ("patterns", "rules", "count_p2", "cp_server"):
        a, b = getattr(whole, name), getattr(blocks, name)
        assert a.equals(b), name
    assert chunk_sizes and min(chunk_sizes) > 10 * 500
    ranked_blocks = learn_patterns(frame, workers=1, top_k=3, min_count=2, max_host_ports=32, supports=True)
    for name in ("patterns", "rules", "predictors"):
        a, b = getattr(ranked, name), getattr(ranked_blocks, name)
        assert a.equals(b), name


def _row_strings(arrays: object) -> list[tuple[int, str]]:
    names = arrays.strings.materialize()  # type: ignore[attr-defined]
    taken = names.take(pa.array(np.asarray(arrays.fid, dtype=np.int64))).to_pylist()  # type: ignore[attr-defined]
    return sorted(zip(np.asarray(arrays.row).tolist(), taken, strict=True))  # type: ignore[attr-defined]


@pytest.mark.parametrize("preset", ["gps2022", "extended"])
@pytest.mark.parametrize("chunk_rows", [1 << 22, 300])
def test_selected_rows_featurize_as_if_taken(preset: str, chunk_rows: int) -> None:
    """``rows=`` (the banner column read whole, not copied) gives the features of the taken rows."""
    table = schema.frame_to_arrow(make_services(400, seed=13))
    rows = np.flatnonzero(np.random.default_rng(3).random(table.num_rows) < 0.6)
    selected = feature_arrays_of_table(table, preset=preset, rows=rows, chunk_rows=chunk_rows)
    taken = feature_arrays_of_table(table.take(pa.array(rows)), preset=preset, chunk_rows=chunk_rows)
    assert selected.row.dtype == np.int32
    assert _row_strings(selected) == _row_strings(taken)


def test_servers_counted_by_gid_range_equal_one_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpsgpu.learn import counts
    from gpsgpu.learn.seed import index_seed

    part = index_seed(make_services(400, seed=17))
    _, local_to_gid = counts.global_ids([counts.feature_keys(part)])
    part = counts.set_global_ids(part, local_to_gid[0])
    port = part.slot_port[part.row_slot].astype(np.uint64)
    keys, total = np.unique((part.row_gid.astype(np.uint64) << np.uint64(16)) | port, return_counts=True)
    monkeypatch.setattr(counts, "_balanced", lambda ops, chunk_pairs, total, workers: 64)
    got_keys, got_counts = counts.count_servers(part)
    assert np.array_equal(got_keys, keys) and np.array_equal(got_counts, total)


def test_support_of_the_rules_servers_is_cp_server_plus_single_port_services() -> None:
    from gpsgpu.learn.patterns import _support_of_servers
    from gpsgpu.ops import cpu

    rng = np.random.default_rng(5)
    servers = np.unique(rng.integers(0, 1 << 40, 3000).astype(np.uint64))
    cp_server = rng.integers(1, 50, servers.size)
    single_keys = np.unique(
        np.concatenate([rng.choice(servers, 500), rng.integers(0, 1 << 40, 500).astype(np.uint64)])
    )
    single_counts = rng.integers(1, 9, single_keys.size)
    entries = np.sort(
        rng.choice(servers, 800) << np.uint64(16) | rng.integers(0, 1 << 16, 800).astype(np.uint64)
    )
    keys, support = _support_of_servers(cpu, (servers, cp_server), (single_keys, single_counts), entries)
    all_keys, all_counts = cpu.sum_tables([(servers, cp_server), (single_keys, single_counts)])
    assert np.array_equal(keys, np.unique(entries >> np.uint64(16)))
    assert np.array_equal(support, all_counts[np.searchsorted(all_keys, keys)])


def test_malloc_thresholds_are_set_unless_the_user_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from gpsgpu import cli

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    cli._tune_malloc()
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == str(2 << 20)
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == "1048576"  # the user's, kept

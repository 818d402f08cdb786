"""The engine's generic primitives: the NumPy/Arrow ones against plain definitions (every machine),
and the CuPy/cuDF twins against them on fresh random inputs of 200k elements (GPU machines).

The device is compared with the host on values, never on the order of things the primitives leave
unspecified (the codes of a factorization, the order of a dictionary).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from gpsgpu.ops import cpu

N = 200_000


def _rng() -> np.random.Generator:
    return np.random.default_rng()  # fresh inputs every run: the twins must agree on any input


def _words(rng: np.random.Generator, n: int) -> list[str]:
    """Strings with repeats, empty strings, newlines, the TLS separator and non-ASCII characters."""
    alphabet = np.array(list("ab\n30xé\r"))
    lengths = rng.integers(0, 12, size=n)
    pool = ["".join(rng.choice(alphabet, size=k)) for k in rng.integers(0, 12, size=2000)]
    return [pool[i] if k % 3 else "".join(rng.choice(alphabet, size=k)) for i, k in
            zip(rng.integers(0, len(pool), size=n), lengths, strict=True)]  # fmt: skip


# --- host primitives against their definitions ----------------------------------------------------


def test_host_factorize_and_positions() -> None:
    rng = _rng()
    values = rng.integers(0, 5000, size=N).astype(np.uint64)
    codes, uniques, position = cpu.factorize_with_positions(values)
    assert np.array_equal(uniques[codes], values)
    assert np.array_equal(values[position], uniques)
    assert np.array_equal(np.sort(uniques), np.unique(values))


def test_host_segments_and_first_positions() -> None:
    rng = _rng()
    keys = np.sort(rng.integers(0, 3000, size=N).astype(np.uint64))
    values = rng.random(N)
    _, start, _ = cpu.runs(keys)
    sums = cpu.segment_sum(values, start)
    maxes = cpu.segment_max(values, start)
    ends = np.append(start[1:], N)
    for k in rng.integers(0, start.size, size=50).tolist():
        assert sums[k] == pytest.approx(values[start[k] : ends[k]].sum())
        assert maxes[k] == values[start[k] : ends[k]].max()
    shuffled = rng.permutation(keys)
    uniques, first = cpu.unique_first(shuffled)
    assert np.array_equal(uniques, np.unique(keys))
    assert np.array_equal(shuffled[first], uniques)
    for u, f in zip(uniques[:20].tolist(), first[:20].tolist(), strict=True):
        assert int(np.flatnonzero(shuffled == u)[0]) == f


def test_host_text_split_is_bigquery_split() -> None:
    words = ["", "a", "a\n", "\n", "a\nb\n\nc", None, "x\r\ny"]
    pieces, parent = cpu.text_split(pa.array(words, type=pa.large_string()), "\n")
    want = [(i, p) for i, w in enumerate(words) if w is not None for p in w.split("\n")]
    assert list(zip(parent.tolist(), pieces.to_pylist(), strict=True)) == want


def test_host_text_hex8_and_rank() -> None:
    rng = _rng()
    values = rng.integers(0, 2**32, size=1000, dtype=np.uint64).astype(np.uint32)
    assert cpu.text_hex8(values).to_pylist() == [f"{v:08x}" for v in values.tolist()]
    words = _words(rng, 2000)
    rank = cpu.text_rank(pa.array(words, type=pa.large_string()))
    by_bytes = sorted(range(len(words)), key=lambda i: words[i].encode())
    assert [words[i] for i in np.argsort(rank)] == [words[i] for i in by_bytes]


def test_host_sum_tables() -> None:
    rng = _rng()
    tables = []
    for size in (0, 1, 5000, 20000):
        keys = np.unique(rng.integers(0, 30000, size=size).astype(np.uint64))
        tables.append((keys, rng.integers(1, 9, size=keys.size).astype(np.int64)))
    want: dict[int, int] = {}
    for keys, counts in tables:
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            want[key] = want.get(key, 0) + count
    keys, totals = cpu.sum_tables(tables)
    assert keys.dtype == np.uint64 and totals.dtype == np.int64
    assert keys.tolist() == sorted(want)
    assert totals.tolist() == [want[k] for k in sorted(want)]


def test_host_text_concat_drain() -> None:
    rng = _rng()
    words = _words(rng, 5000)
    pieces = [words[:0], words[:1000], ["", "x"], words[1000:], []]
    arrays = [pa.array(p, type=pa.large_string()) for p in pieces]
    arrays.append(pa.array(words[:300], type=pa.string()).slice(7, 100))  # an offset, not large
    expected = cpu.text_concat(arrays)
    drained = list(arrays)
    out = cpu.text_concat_drain(drained)
    assert drained == []
    assert out.type == pa.large_string()
    assert out.equals(expected)
    with_null = [arrays[1], pa.array(["a", None], type=pa.large_string())]
    assert cpu.text_concat_drain(list(with_null)).equals(cpu.text_concat(with_null))
    assert cpu.text_concat_drain([]).equals(cpu.text([]))


def test_host_text_encode() -> None:
    words = _words(_rng(), 5000)
    codes, dictionary = cpu.text_encode(pa.array(words, type=pa.large_string()))
    assert [dictionary.to_pylist()[c] for c in codes.tolist()] == words
    assert len(set(dictionary.to_pylist())) == len(dictionary)


# --- device twins -----------------------------------------------------------------------------------


def _host(value: Any) -> Any:
    from gpsgpu.backend import to_numpy

    return to_numpy(value)


@pytest.mark.gpu
def test_device_array_primitives_equal_the_host() -> None:
    import cupy as cp

    from gpsgpu.ops import gpu

    rng = _rng()
    values = rng.integers(0, 50_000, size=N).astype(np.uint64)
    d = cp.asarray(values)
    assert np.array_equal(_host(gpu.unique_sorted(d)), cpu.unique_sorted(values))
    on_device, on_host = d.copy(), values.copy()
    gpu.sort_in_place(on_device)
    cpu.sort_in_place(on_host)
    assert np.array_equal(_host(on_device), on_host) and np.array_equal(on_host, np.sort(values))
    u, inv = gpu.unique_inverse(d)
    assert np.array_equal(_host(u)[_host(inv)], values)
    codes, uniques, position = gpu.factorize_with_positions(d)
    assert np.array_equal(_host(uniques)[_host(codes)], values)
    assert np.array_equal(values[_host(position)], _host(uniques))
    assert gpu.all_distinct(cp.arange(N)) and not gpu.all_distinct(d)
    table = rng.permutation(np.unique(values))[:20_000]
    assert np.array_equal(_host(gpu.lookup(cp.asarray(table), d)), cpu.lookup(table, values))
    counts = rng.integers(0, 5, size=N)
    assert np.array_equal(_host(gpu.repeat(d, cp.asarray(counts))), np.repeat(values, counts))
    small = rng.integers(0, 10, size=N).astype(np.uint8)
    assert np.array_equal(_host(gpu.argsort_stable(cp.asarray(small))), np.argsort(small, kind="stable"))
    ordered = np.sort(values)
    for got, want in zip(gpu.runs(cp.asarray(ordered)), cpu.runs(ordered), strict=True):
        assert np.array_equal(_host(got), want)
    keys = np.sort(rng.integers(0, 3000, size=N).astype(np.uint64))
    scores = rng.random(N) - 0.5
    _, start, _ = cpu.runs(keys)
    got_sum = _host(gpu.segment_sum(cp.asarray(scores), cp.asarray(start)))
    assert np.allclose(got_sum, cpu.segment_sum(scores, start), rtol=1e-12, atol=1e-12)
    got_max = _host(gpu.segment_max(cp.asarray(scores), cp.asarray(start)))
    assert np.array_equal(got_max, cpu.segment_max(scores, start))
    shuffled = rng.permutation(keys)
    got_u, got_first = gpu.unique_first(cp.asarray(shuffled))
    want_u, want_first = cpu.unique_first(shuffled)
    assert np.array_equal(_host(got_u), want_u) and np.array_equal(_host(got_first), want_first)
    tables = [(np.unique(rng.integers(0, 9000, size=5000)).astype(np.uint64), None) for _ in range(3)]
    tables = [(k, rng.integers(1, 9, size=k.size)) for k, _ in tables]
    got = gpu.sum_tables([(cp.asarray(k), cp.asarray(c)) for k, c in tables])
    want = cpu.sum_tables(tables)
    assert np.array_equal(_host(got[0]), want[0]) and np.array_equal(_host(got[1]), want[1])
    slot_count = rng.integers(1, 11, size=5000)
    row_slot = rng.integers(0, 5000, size=N)
    assert np.array_equal(
        _host(gpu.pair_offsets(cp.asarray(row_slot), cp.asarray(slot_count))),
        cpu.pair_offsets(row_slot, slot_count),
    )
    # The hitrate table's three-key order (float rate, uint16 port, int rank), and the in-place
    # counts and gathers.
    rank = rng.integers(0, 1000, size=N)
    port = rng.integers(0, 20, size=N).astype(np.uint16)
    rate = -(rng.integers(1, 50, size=N) / 50)
    got_order = gpu.lexsort([cp.asarray(rank), cp.asarray(port), cp.asarray(rate)])
    assert np.array_equal(_host(got_order), cpu.lexsort([rank, port, rate]))
    got_keys, got_counts = gpu.count_keys(cp.asarray(values), in_place=True)
    want_keys, want_counts = cpu.count_keys(values.copy(), in_place=True)
    assert np.array_equal(_host(got_keys), want_keys) and np.array_equal(_host(got_counts), want_counts)
    index = rng.integers(0, 5000, size=N).astype(np.int32)
    lookup = rng.integers(-1, 5000, size=5000).astype(np.int32)
    assert np.array_equal(_host(gpu.take_over(cp.asarray(lookup), cp.asarray(index))), lookup[index])


@pytest.mark.gpu
def test_device_strings_equal_the_host() -> None:
    import cupy as cp

    from gpsgpu.ops import gpu

    rng = _rng()
    words = _words(rng, N)
    host = pa.array(words, type=pa.large_string())
    dev = gpu.text(host)
    for separator in ("\n", "30"):
        h_pieces, h_parent = cpu.text_split(host, separator)
        d_pieces, d_parent = gpu.text_split(dev, separator)
        # The device may list a row's lone empty piece apart: compare as sorted (row, piece) pairs.
        want = sorted(zip(h_parent.tolist(), h_pieces.to_pylist(), strict=True))
        got = sorted(zip(_host(d_parent).tolist(), gpu.text_to_arrow(d_pieces).to_pylist(), strict=True))
        assert got == want, separator
    joined = gpu.text_join("x: ", dev, "-", dev)
    assert gpu.text_to_arrow(joined).to_pylist() == cpu.text_join("x: ", host, "-", host).to_pylist()
    assert np.array_equal(_host(gpu.text_length(dev)), cpu.text_length(host))
    assert np.array_equal(_host(gpu.text_equal(dev, "ab")), cpu.text_equal(host, "ab"))
    values = rng.integers(0, 2**32, size=N, dtype=np.uint64).astype(np.uint32)
    assert (
        gpu.text_to_arrow(gpu.text_hex8(cp.asarray(values))).to_pylist() == cpu.text_hex8(values).to_pylist()
    )
    signed = rng.integers(-(2**31), 2**31, size=N).astype(np.int32)
    decimal = gpu.text_to_arrow(gpu.text_decimal(cp.asarray(signed))).to_pylist()
    assert decimal == cpu.text_decimal(signed).to_pylist()
    codes, dictionary = gpu.text_encode(dev)
    assert gpu.text_to_arrow(gpu.text_take(dictionary, codes)).to_pylist() == words
    rank = _host(gpu.text_rank(dev))
    assert np.array_equal(rank, cpu.text_rank(host)) or [words[i] for i in np.argsort(rank)] == sorted(
        words, key=str.encode
    )
    expected = np.array([xxhash.xxh64_intdigest(w.encode(), 0) for w in words[:5000]], dtype=np.uint64)
    assert np.array_equal(_host(gpu.xxh64_strings(gpu.text_take(dev, cp.arange(5000)))), expected)


def test_host_sort_in_place_sorts_runs_and_random_values() -> None:
    rng = _rng()
    runs = np.concatenate([np.sort(rng.integers(0, 1 << 40, 5_000)) for _ in range(7)]).astype(np.uint64)
    for values in (runs, rng.integers(0, 1 << 62, 20_000).astype(np.uint64), runs[::-1].copy()):
        expected = np.sort(values)
        cpu.sort_in_place(values)
        assert np.array_equal(values, expected)

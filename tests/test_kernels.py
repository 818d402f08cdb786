"""CUDA kernels: they compile (nvcc, no GPU needed), their NumPy twins are right, and on a GPU the
kernels equal the twins exactly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpsgpu.ops import cpu
from gpsgpu.ops.kernels import KERNEL_NAMES, kernel_path

NO_RANK = 0xFFFFFFFF


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernel_compiles_with_nvcc(name: str, tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    source = kernel_path(name)
    assert f'extern "C" __global__ void {name}(' in source.read_text()
    done = subprocess.run(
        [nvcc, "-arch=sm_90", "-cubin", "-o", str(tmp_path / f"{name}.cubin"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def test_importing_the_gpu_ops_touches_no_gpu_library() -> None:
    code = (
        "import sys, gpsgpu.ops.gpu, gpsgpu.learn, gpsgpu.predict, gpsgpu.cli; "
        "print(sorted({'cupy', 'cudf'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def host_csr(hosts: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``slot_port, slot_first, slot_count`` of hosts given as sorted port lists."""
    ports, first, count = [], [], []
    for host in hosts:
        start = len(ports)
        ports += host
        first += [start] * len(host)
        count += [len(host)] * len(host)
    return np.array(ports, np.uint16), np.array(first, np.int64), np.array(count, np.int64)


CASES = {
    "empty": [],
    "one host": [[22, 80, 443]],
    "ports 0 and 65535": [[0, 65535], [0, 1, 65535]],
    "exactly 2 and exactly 10 ports": [[80, 443], list(range(8000, 8010))],
}


def case_rows(hosts: list[list[int]], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_slots = sum(len(h) for h in hosts)
    slots, fids = [], []
    for slot in range(n_slots):
        k = int(rng.integers(1, 4))
        slots += [slot] * k
        fids += rng.choice(np.array([0, 1, 7, 0xFFFFFFFF], dtype=np.uint32), size=k, replace=False).tolist()
    return np.array(slots, np.int64), np.array(fids, np.uint32)


def python_pairs(row_slot, row_fid, slot_port, slot_first, slot_count) -> list[list[tuple[int, int]]]:
    """Each row's ``(key, target)`` pairs, in its host's slot order, own slot skipped."""
    out = []
    for slot, fid in zip(row_slot.tolist(), row_fid.tolist(), strict=True):
        first, count = int(slot_first[slot]), int(slot_count[slot])
        base = (fid << 32) | (int(slot_port[slot]) << 16)
        out.append([(base | int(slot_port[t]), t) for t in range(first, first + count) if t != slot])
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_twins_match_a_plain_loop(case: str) -> None:
    slot_port, slot_first, slot_count = host_csr(CASES[case])
    row_slot, row_fid = case_rows(CASES[case])
    per_row = python_pairs(row_slot, row_fid, slot_port, slot_first, slot_count)
    keys = cpu.expand_pairs(row_slot, row_fid, slot_port, slot_first, slot_count)
    # Block order: rows by port count, then row index; pair_offsets says where each row starts.
    block = sorted(range(len(per_row)), key=lambda i: (len(per_row[i]), i))
    assert keys.tolist() == [k for i in block for k, _ in per_row[i]]
    offsets = cpu.pair_offsets(row_slot, slot_count)
    for i, pairs in enumerate(per_row):
        assert keys[offsets[i] : offsets[i] + len(pairs)].tolist() == [k for k, _ in pairs]
    expected = [pair for pairs in per_row for pair in pairs]
    table = np.unique(keys[::2])
    rank = np.arange(table.size, dtype=np.uint32)[::-1].copy()
    best = cpu.best_predictor(
        row_slot,
        row_fid,
        slot_port,
        slot_first,
        slot_count,
        table,
        rank,
        np.full(slot_port.size, NO_RANK, np.uint32),
    )
    plain = np.full(slot_port.size, NO_RANK, np.uint32)
    for key, target in expected:
        at = np.searchsorted(table, key)
        if at < table.size and table[at] == key:
            plain[target] = min(plain[target], rank[at])
    assert best.tolist() == plain.tolist()
    # A lower bound per slot: the next best rank above the previous pass's (top-k by passes).
    lower = np.where(best == NO_RANK, NO_RANK, best + 1).astype(np.uint32)
    second = cpu.best_predictor(
        row_slot, row_fid, slot_port, slot_first, slot_count, table, rank,
        np.full(slot_port.size, NO_RANK, np.uint32), lower=lower,
    )  # fmt: skip
    plain = np.full(slot_port.size, NO_RANK, np.uint32)
    for key, target in expected:
        at = np.searchsorted(table, key)
        if at < table.size and table[at] == key and rank[at] >= lower[target]:
            plain[target] = min(plain[target], rank[at])
    assert second.tolist() == plain.tolist()


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(CASES))
def test_kernels_equal_their_twins(case: str) -> None:
    import cupy as cp

    from gpsgpu.ops import gpu

    slot_port, slot_first, slot_count = host_csr(CASES[case])
    row_slot, row_fid = case_rows(CASES[case])
    args = (row_slot, row_fid, slot_port, slot_first, slot_count)
    expected = cpu.expand_pairs(*args)
    got = gpu.expand_pairs(*(cp.asarray(a) for a in args))
    assert np.array_equal(cp.asnumpy(got), expected)
    table = np.unique(expected[::2])
    rank = np.arange(table.size, dtype=np.uint32)[::-1].copy()
    start = np.full(slot_port.size, NO_RANK, np.uint32)
    want = cpu.best_predictor(*args, table, rank, start.copy())
    have = gpu.best_predictor(
        *(cp.asarray(a) for a in args), cp.asarray(table), cp.asarray(rank), cp.asarray(start)
    )
    assert np.array_equal(cp.asnumpy(have), want)
    lower = np.where(want == NO_RANK, NO_RANK, want + 1).astype(np.uint32)
    want = cpu.best_predictor(*args, table, rank, start.copy(), lower=lower)
    have = gpu.best_predictor(
        *(cp.asarray(a) for a in args), cp.asarray(table), cp.asarray(rank), cp.asarray(start),
        lower=cp.asarray(lower),
    )  # fmt: skip
    assert np.array_equal(cp.asnumpy(have), want)
    keys, counts = gpu.count_keys(got)
    want_keys, want_counts = cpu.count_keys(expected)
    assert np.array_equal(cp.asnumpy(keys), want_keys) and np.array_equal(cp.asnumpy(counts), want_counts)

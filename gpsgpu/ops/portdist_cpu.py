"""NumPy twins of port2dist's CUDA kernels: the specification of :mod:`gpsgpu.ops.portdist_gpu`.

:func:`minplus_relax` is ``kernels/minplus_sssp.cu``'s ``minplus_relax`` step, operation for
operation (one float32 addition per candidate, an exact min), so :func:`sssp_minplus` and its GPU
twin give identical bits. The CPU pipeline itself uses SciPy's Dijkstra (float64); these twins are
the reference the kernel is tested against, and an option (``--apsp minplus``) on the CPU.

The graph layout is a symmetric CSR over ``N`` nodes: ``indptr int64[N+1]``, ``nbr int32[E]``,
``length float32[E]`` (positive, finite).
"""

from __future__ import annotations

import numpy as np

#: Upper bound on the float32 candidates one relaxation holds at once (rows are cut to fit).
CANDIDATE_BUDGET = 1 << 26


def minplus_relax(dist: np.ndarray, indptr: np.ndarray, nbr: np.ndarray, length: np.ndarray) -> np.ndarray:
    """One Jacobi step ``min(D, D (min,+) W)`` of a float32 ``R x N`` distance block."""
    out = dist.copy()
    degree = np.diff(indptr)
    has = np.flatnonzero(degree > 0)
    if has.size == 0:
        return out
    starts = indptr[:-1][has]
    step = max(1, CANDIDATE_BUDGET // max(1, nbr.size))
    for lo in range(0, dist.shape[0], step):
        cand = dist[lo : lo + step][:, nbr] + length[None, :]  # float32 + float32: one rounding
        best = np.minimum.reduceat(cand, starts, axis=1)
        out[lo : lo + step, has] = np.minimum(dist[lo : lo + step][:, has], best)
    return out


def sssp_minplus(
    indptr: np.ndarray, nbr: np.ndarray, length: np.ndarray, sources: np.ndarray, n_nodes: int
) -> np.ndarray:
    """Distances from each of ``sources`` (node indices) to every node: float32 ``[len(sources), N]``.

    Iterates :func:`minplus_relax` from ``inf`` (``0`` at each source) until nothing changes; that
    takes one more step than the most edges on any shortest path.
    """
    sources = np.asarray(sources, dtype=np.int64)
    length = np.asarray(length, dtype=np.float32)
    dist = np.full((sources.size, int(n_nodes)), np.inf, dtype=np.float32)
    dist[np.arange(sources.size), sources] = 0.0
    while True:
        nxt = minplus_relax(dist, indptr, nbr, length)
        if np.array_equal(nxt, dist):
            return nxt
        dist = nxt

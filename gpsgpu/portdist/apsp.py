"""All-pairs shortest paths over the port graph, kept as each port's k nearest ports.

A dense 65,536 x 65,536 float32 matrix would take 17 GB, so nothing dense over the port space is
ever held or stored. Distances are computed for blocks of source rows over the observed ports only
(``R x N``, ``N`` the graph's nodes), and each block is reduced at once to every row's ``k``
nearest ports before the next block starts; any other pair is answered on demand by one
single-source run (:func:`pair_distance`, milliseconds on a graph of thousands of ports).

Engines (the same distances up to float32 rounding):

- ``scipy``: :func:`scipy.sparse.csgraph.dijkstra` in float64 (the CPU default, the reference);
- ``minplus``: :func:`gpsgpu.ops.portdist_cpu.sssp_minplus`, the NumPy twin of the kernel;
- ``gpu``: ``kernels/minplus_sssp.cu`` through :func:`gpsgpu.ops.portdist_gpu.sssp_minplus`,
  repeated sparse min-plus products (batched Bellman-Ford). On a sparse port graph that costs
  ``O(iterations x R x E)`` against Floyd-Warshall's ``O(N^3)``: a few dozen iterations over a few
  neighbours per port instead of ``N`` dense passes.

Neighbours are ordered by ``(distance, port)``, a total order: the distance's float32 bits (which
sort like the numbers for non-negative floats) and the port form one uint64 key, so ties never
depend on a sort's stability or on the backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu.portdist import columns as C
from gpsgpu.portdist.graph import PortGraph

ENGINES = ("scipy", "minplus", "gpu")
#: Default number of neighbours stored per port (queries for more run on demand).
DEFAULT_STORE_K = 64
#: Float32 cells of one distance block (rows are cut to fit): 256 MiB.
BLOCK_CELLS = 1 << 26


def _namespace(engine: str) -> Any:
    if engine == "gpu":
        import cupy

        return cupy
    return np


def distance_rows(graph: PortGraph, rows: np.ndarray, /, *, engine: str = "scipy") -> Any:
    """Shortest-path distances from the nodes ``rows`` to every node: float32 ``[len(rows), N]``
    (``inf`` where unreachable), a NumPy array, or a CuPy array for ``engine="gpu"``."""
    rows = np.asarray(rows, dtype=np.int64)
    if engine == "scipy":
        from scipy.sparse.csgraph import dijkstra

        return dijkstra(graph.csr(), directed=True, indices=rows).astype(np.float32)
    if engine == "minplus":
        from gpsgpu.ops import portdist_cpu

        return portdist_cpu.sssp_minplus(graph.indptr, graph.nbr, graph.length, rows, graph.n_nodes)
    if engine == "gpu":
        from gpsgpu.ops import portdist_gpu

        return portdist_gpu.sssp_minplus(graph.indptr, graph.nbr, graph.length, rows, graph.n_nodes)
    raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")


def top_k(dist: Any, rows: Any, k: int, /) -> tuple[Any, Any]:
    """Each row's ``k`` nearest other nodes by ``(distance, node)``.

    Parameters
    ----------
    dist : float32 ``[R, N]`` (NumPy or CuPy)
    rows : int64 ``[R]``, the node of each row (excluded from its own neighbours).

    Returns
    -------
    (idx, d)
        ``idx int64[R, k']`` and ``d float32[R, k']`` with ``k' = min(k, N - 1)``; unreachable
        entries have ``d = inf``.
    """
    xp = np if isinstance(dist, np.ndarray) else _namespace("gpu")
    n_rows, n = dist.shape
    kk = min(int(k), n - 1)
    if kk <= 0 or n_rows == 0:
        return xp.zeros((n_rows, 0), dtype=xp.int64), xp.zeros((n_rows, 0), dtype=xp.float32)
    bits = xp.ascontiguousarray(dist, dtype=xp.float32).view(xp.uint32).astype(xp.uint64)
    key = (bits << xp.uint64(16)) | xp.arange(n, dtype=xp.uint64)[None, :]
    rows = xp.asarray(rows, dtype=xp.int64)
    key[xp.arange(n_rows), rows] = xp.uint64(0xFFFFFFFFFFFFFFFF)
    part = xp.argpartition(key, kk - 1, axis=1)[:, :kk]
    chosen = xp.take_along_axis(key, part, axis=1)
    order = xp.argsort(chosen, axis=1)
    idx = xp.take_along_axis(part, order, axis=1).astype(xp.int64)
    return idx, xp.take_along_axis(dist, idx, axis=1)


def _to_host(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.get()


def iter_row_blocks(graph: PortGraph, /, *, block_rows: int | None = None) -> Iterator[np.ndarray]:
    """Node indices in blocks of at most ``block_rows`` (default: what fits :data:`BLOCK_CELLS`)."""
    n = graph.n_nodes
    step = block_rows or max(1, min(n, BLOCK_CELLS // max(1, n)))
    for lo in range(0, n, step):
        yield np.arange(lo, min(n, lo + step), dtype=np.int64)


def nearest_ports(
    graph: PortGraph, /, *, k: int = DEFAULT_STORE_K, engine: str = "scipy", block_rows: int | None = None
) -> pd.DataFrame:
    """Every observed port's ``k`` nearest ports.

    Returns
    -------
    pandas.DataFrame
        ``port uint16, rank int16, neighbor uint16, distance float32``, sorted by ``port, rank``;
        unreachable ports are left out (a port has fewer than ``k`` rows then).
    """
    parts: list[tuple[np.ndarray, ...]] = []
    for rows in iter_row_blocks(graph, block_rows=block_rows):
        dist = distance_rows(graph, rows, engine=engine)
        idx, d = top_k(dist, rows, k)
        idx, d = _to_host(idx), _to_host(d)
        rank = np.broadcast_to(np.arange(idx.shape[1], dtype=np.int16), idx.shape)
        port = np.broadcast_to(rows[:, None], idx.shape)
        ok = np.isfinite(d)
        parts.append((graph.ports[port[ok]], rank[ok], graph.ports[idx[ok]], d[ok].astype(np.float32)))
    if not parts:
        return empty_neighbors()
    cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
    return pd.DataFrame({C.PORT: cols[0], C.RANK: cols[1], C.NEIGHBOR: cols[2], C.DISTANCE: cols[3]})


def empty_neighbors() -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.PORT: np.zeros(0, np.uint16),
            C.RANK: np.zeros(0, np.int16),
            C.NEIGHBOR: np.zeros(0, np.uint16),
            C.DISTANCE: np.zeros(0, np.float32),
        }
    )


def distances_from(graph: PortGraph, port: int, /) -> np.ndarray | None:
    """Distances (float64) from ``port`` to every node of the graph, or None if it is not in it."""
    i = graph.index_of(port)
    if i < 0:
        return None
    from scipy.sparse.csgraph import dijkstra

    return dijkstra(graph.csr(), directed=True, indices=i)


def pair_distance(graph: PortGraph, a: int, b: int, /) -> float | None:
    """The distance between ports ``a`` and ``b``; None when either is unobserved or unreachable."""
    if int(a) == int(b):
        return 0.0 if graph.index_of(a) >= 0 else None
    j = graph.index_of(b)
    row = distances_from(graph, a)
    if row is None or j < 0 or not np.isfinite(row[j]):
        return None
    return float(np.float32(row[j]))


def neighbors_on_demand(graph: PortGraph, port: int, k: int, /) -> pd.DataFrame:
    """``port``'s ``k`` nearest ports computed now (for ``k`` beyond what was stored)."""
    i = graph.index_of(port)
    if i < 0:
        return empty_neighbors()
    row = distances_from(graph, port).astype(np.float32)[None, :]
    idx, d = top_k(row, np.asarray([i]), k)
    ok = np.isfinite(d[0])
    idx, d = idx[0][ok], d[0][ok]
    return pd.DataFrame(
        {
            C.PORT: np.full(idx.size, port, dtype=np.uint16),
            C.RANK: np.arange(idx.size, dtype=np.int16),
            C.NEIGHBOR: graph.ports[idx],
            C.DISTANCE: d.astype(np.float32),
        }
    )


def iter_pair_distances(
    graph: PortGraph, /, *, engine: str = "scipy", block_rows: int | None = None, k: int | None = None
) -> Iterator[pd.DataFrame]:
    """The whole window as long rows ``a uint16, b uint16, distance float32``, block by block.

    Every reachable pair once (``a < b``); with ``k``, each port's ``k`` nearest instead (both
    directions, as ``port``'s neighbour lists).
    """
    for rows in iter_row_blocks(graph, block_rows=block_rows):
        dist = _to_host(distance_rows(graph, rows, engine=engine))
        if k is not None:
            idx, d = top_k(dist, rows, k)
            r = np.broadcast_to(rows[:, None], idx.shape)
            ok = np.isfinite(d)
            a, b, dd = graph.ports[r[ok]], graph.ports[idx[ok]], d[ok]
        else:
            r, c = np.nonzero(np.isfinite(dist) & (np.arange(graph.n_nodes)[None, :] > rows[:, None]))
            a, b, dd = graph.ports[rows[r]], graph.ports[c], dist[r, c]
        yield pd.DataFrame({C.A: a, C.B: b, C.DISTANCE: dd.astype(np.float32)})

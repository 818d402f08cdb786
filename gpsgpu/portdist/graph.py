"""Window sums of daily counts, rescaling and inversion, and the port graph.

From counts to lengths:

1. :func:`sum_counts` adds daily counts (``a, b, n``) over a window: windows are sums of days;
2. :func:`symmetrize` merges ``a -> b`` and ``b -> a`` into one undirected edge ``a < b`` whose
   ``weight`` is their sum, because a distance between two ports must not depend on which one a
   scanner happened to probe first;
3. :func:`rescale_invert` turns weights into lengths, heavy edges short: the weight is rescaled
   into ``(0, 1]`` and inverted, ``length = 1 / rescaled``, so lengths are ``>= 1``. Rescalings:
   ``assoc`` (the default): ``w / sqrt(s_a s_b)`` with ``s`` a port's total weight, divided by its
   maximum: a cosine-like association that discounts hubs such as 80 or 23, which every mixed
   scanner touches, so a port's nearest ports are the ones chained *specifically* with it;
   ``linear``: ``w / max w``; ``log``: ``log(1 + w) / log(1 + max w)``, which keeps a few enormous
   edges from making every other edge look infinitely long;
4. :func:`port_graph` lays the edges out as a symmetric CSR over the observed ports only: the
   all-pairs step never sees the 65,536-port space, only ports some tailored scan chained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpsgpu.backend import backend_of, to_numpy, values_of
from gpsgpu.portdist import columns as C
from gpsgpu.portdist.sequences import _sum_by_key

RESCALES = ("assoc", "log", "linear")
#: ``assoc`` by measurement: on the simulated darknet's held-out day it blocks more of the next
#: ports at k = 1..3 than ``log`` (63% vs 56% at k = 1) and ``linear``, for the same false positives.
DEFAULT_RESCALE = "assoc"


def sum_counts(counts: Any, /) -> Any:
    """Sum transition counts by ``(a, b)`` (over days, files or partitions).

    Parameters
    ----------
    counts : frame
        ``a uint16, b uint16, n int64, sources int64`` (a ``day`` column, if any, is summed over).

    Returns
    -------
    frame
        ``a uint16, b uint16, n int64, sources int64`` sorted by ``a, b``, one row per pair
        (``sources`` becomes source-days).
    """
    b = backend_of(counts)
    xp = b.xp
    key = (values_of(counts[C.A]).astype(xp.uint32) << xp.uint32(16)) | values_of(counts[C.B]).astype(
        xp.uint32
    )
    ukey, n = _sum_by_key(xp, key, values_of(counts[C.N]))
    _, sources = _sum_by_key(xp, key, values_of(counts[C.SOURCES]))
    return b.xdf.DataFrame(
        {
            C.A: (ukey >> xp.uint32(16)).astype(xp.uint16),
            C.B: (ukey & xp.uint32(0xFFFF)).astype(xp.uint16),
            C.N: n,
            C.SOURCES: sources,
        }
    )


def symmetrize(counts: Any, /, *, min_sources: int = 1) -> Any:
    """Undirected edges from directed counts, keeping those enough sources made.

    Parameters
    ----------
    counts : frame
        ``a uint16, b uint16, n int64, sources int64`` (``a != b``), or ``weight float64`` instead
        of ``n``.
    min_sources : int
        Drop edges made by fewer sources (both directions added): one stray source chaining two
        random ports is noise, not meaning, and would add a node to every all-pairs run.

    Returns
    -------
    frame
        ``a uint16, b uint16, weight float64, sources int64`` with ``a < b``, sorted,
        ``weight = w(a,b) + w(b,a)``.
    """
    b = backend_of(counts)
    xp = b.xp
    a, bb = values_of(counts[C.A]), values_of(counts[C.B])
    w = values_of(counts[C.N] if C.N in counts.columns else counts[C.WEIGHT]).astype(xp.float64)
    src = values_of(counts[C.SOURCES]).astype(xp.int64)
    keep = a != bb
    lo, hi, w, src = xp.minimum(a, bb)[keep], xp.maximum(a, bb)[keep], w[keep], src[keep]
    key = (lo.astype(xp.uint32) << xp.uint32(16)) | hi.astype(xp.uint32)
    if key.size:
        order = xp.argsort(key)
        key, w, src = key[order], w[order], src[order]
        last = xp.flatnonzero(xp.concatenate([key[1:] != key[:-1], xp.ones(1, dtype=bool)]))
        sums = []
        for values in (w, src):
            csum = xp.cumsum(values)
            total = csum[last]
            total[1:] = total[1:] - csum[last[:-1]]
            sums.append(total)
        key, w, src = key[last], sums[0], sums[1]
        enough = src >= min_sources
        key, w, src = key[enough], w[enough], src[enough]
    return b.xdf.DataFrame(
        {
            C.A: (key >> xp.uint32(16)).astype(xp.uint16),
            C.B: (key & xp.uint32(0xFFFF)).astype(xp.uint16),
            C.WEIGHT: w.astype(xp.float64),
            C.SOURCES: src.astype(xp.int64),
        }
    )


def rescale_invert(edges: Any, /, *, rescale: str = DEFAULT_RESCALE) -> Any:
    """Add ``length float32``: weights rescaled into ``(0, 1]`` and inverted (see the module doc).

    Parameters
    ----------
    edges : frame
        ``a uint16, b uint16, weight float64`` (positive weights), as :func:`symmetrize` returns.
    """
    if rescale not in RESCALES:
        raise ValueError(f"rescale must be one of {RESCALES}, not {rescale!r}")
    b = backend_of(edges)
    xp = b.xp
    w = values_of(edges[C.WEIGHT]).astype(xp.float64)
    out = edges.copy()
    if w.size == 0:
        out[C.LENGTH] = w.astype(xp.float32)
        return out
    if rescale == "linear":
        scaled = w / w.max()
    elif rescale == "log":
        scaled = xp.log1p(w) / xp.log1p(w.max())
    else:
        a, bb = values_of(edges[C.A]).astype(xp.int64), values_of(edges[C.B]).astype(xp.int64)
        strength = xp.bincount(a, weights=w, minlength=65_536) + xp.bincount(bb, weights=w, minlength=65_536)
        scaled = w / xp.sqrt(strength[a] * strength[bb])
        scaled = scaled / scaled.max()
    out[C.LENGTH] = (1.0 / scaled).astype(xp.float32)
    return out


@dataclass(frozen=True)
class PortGraph:
    """A symmetric CSR over the observed ports (host NumPy arrays: at most 65,536 nodes).

    Attributes
    ----------
    ports : uint16[N]
        The observed ports, ascending; node ``i`` is ``ports[i]``.
    indptr : int64[N + 1]
    nbr : int32[2E]
        Node indices of each node's neighbours, ascending within a node.
    length : float32[2E]
    """

    ports: np.ndarray
    indptr: np.ndarray
    nbr: np.ndarray
    length: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.ports.size)

    @property
    def n_edges(self) -> int:
        return int(self.nbr.size // 2)

    def index_of(self, port: int) -> int:
        """Node index of ``port``, or -1 when no tailored scan chained it to another port."""
        i = int(np.searchsorted(self.ports, port))
        return i if i < self.ports.size and int(self.ports[i]) == int(port) else -1

    def csr(self) -> Any:
        """The graph as a SciPy CSR matrix of float64 lengths."""
        from scipy.sparse import csr_matrix

        n = self.n_nodes
        return csr_matrix((self.length.astype(np.float64), self.nbr, self.indptr), shape=(n, n))


def port_graph(edges: Any, /) -> PortGraph:
    """Lay out ``a uint16, b uint16, length float32`` edges (``a < b``) as a :class:`PortGraph`."""
    a = np.asarray(to_numpy(values_of(edges[C.A])), dtype=np.int64)
    b = np.asarray(to_numpy(values_of(edges[C.B])), dtype=np.int64)
    length = np.asarray(to_numpy(values_of(edges[C.LENGTH])), dtype=np.float32)
    ports = np.unique(np.concatenate([a, b])).astype(np.uint16)
    ia, ib = np.searchsorted(ports, a), np.searchsorted(ports, b)
    row = np.concatenate([ia, ib])
    col = np.concatenate([ib, ia])
    both = np.concatenate([length, length])
    order = np.lexsort((col, row))
    row, col, both = row[order], col[order], both[order]
    indptr = np.zeros(ports.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=ports.size), out=indptr[1:])
    return PortGraph(ports=ports, indptr=indptr, nbr=col.astype(np.int32), length=both)

"""CuPy launchers of port2dist's CUDA kernels (twins: :mod:`gpsgpu.ops.portdist_cpu`).

Imported only when data is on the device; CuPy is imported inside the functions so that importing
this module never creates a CUDA context. The kernel source is read from ``kernels/`` (or the
wheel's ``gpsgpu/_kernels``) and compiled once per process by :class:`cupy.RawModule`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

_THREADS = 256


def _kernel_source(name: str) -> str:
    here = Path(__file__).resolve().parent
    for folder in (here.parent.parent / "kernels", here.parent / "_kernels"):
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"CUDA source {name} not found beside the package")


@functools.cache
def _module() -> Any:
    import cupy as cp

    return cp.RawModule(code=_kernel_source("minplus_sssp.cu"), options=("-std=c++17",))


def sssp_minplus(indptr: Any, nbr: Any, length: Any, sources: Any, n_nodes: int) -> Any:
    """Distances from each of ``sources`` to every node as a CuPy float32 ``[len(sources), N]``.

    Same contract and same bits as :func:`gpsgpu.ops.portdist_cpu.sssp_minplus`; inputs may be
    NumPy or CuPy arrays (host arrays are copied to the device once).
    """
    import cupy as cp

    kernel = _module().get_function("minplus_relax")
    indptr = cp.asarray(indptr, dtype=cp.int64)
    nbr = cp.asarray(nbr, dtype=cp.int32)
    length = cp.asarray(length, dtype=cp.float32)
    sources = cp.asarray(sources, dtype=cp.int64)
    n_rows, n_nodes = int(sources.size), int(n_nodes)
    dist = cp.full((n_rows, n_nodes), cp.inf, dtype=cp.float32)
    dist[cp.arange(n_rows), sources] = 0.0
    other = cp.empty_like(dist)
    changed = cp.zeros(1, dtype=cp.int32)
    total = n_rows * n_nodes
    blocks = (total + _THREADS - 1) // _THREADS
    while total:
        changed.fill(0)
        kernel(
            (blocks,),
            (_THREADS,),
            (dist, other, indptr, nbr, length, np.int64(n_rows), np.int64(n_nodes), changed),
        )
        dist, other = other, dist
        if int(changed.get()[0]) == 0:  # one device->host sync per iteration
            break
    return dist

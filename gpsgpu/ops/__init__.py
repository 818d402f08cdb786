"""Array primitives with one name per operation and two implementations: NumPy and CuPy.

:mod:`gpsgpu.ops.cpu` is the specification (NumPy twins of the CUDA kernels in ``kernels/``);
:mod:`gpsgpu.ops.gpu` has the same functions on CuPy arrays. Stages pick one with :func:`ops_for`
from the backend of the frame they are given, so nothing here imports CuPy unless the data is on
the device.
"""

from __future__ import annotations

from types import ModuleType

from gpsgpu.backend import Backend


def ops_for(backend: Backend) -> ModuleType:
    """The ops module of ``backend``: :mod:`gpsgpu.ops.cpu` or :mod:`gpsgpu.ops.gpu`."""
    if backend is Backend.GPU:
        from gpsgpu.ops import gpu

        return gpu
    from gpsgpu.ops import cpu

    return cpu

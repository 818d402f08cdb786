"""The one CPU/GPU switch.

The backend is chosen once, when data enters the program (ingest, or reading a Parquet table);
everything below reads it back from the frame it is handed (:func:`backend_of`). Nothing here
imports a GPU library at module import time, and device detection never creates a CUDA context:
it asks NVML (``nvidia-ml-py``) or, without it, the kernel driver's ``/proc`` entries, because
touching CUDA in the parent process breaks dask-cuda workers started afterwards.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from gpsgpu.errors import UsageError

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "cpu", "gpu")


class Backend(enum.Enum):
    CPU = "cpu"
    GPU = "gpu"

    @property
    def xp(self) -> ModuleType:
        """The array namespace: numpy or cupy."""
        return importlib.import_module("numpy" if self is Backend.CPU else "cupy")

    @property
    def xdf(self) -> ModuleType:
        """The dataframe namespace: pandas or cudf."""
        return importlib.import_module("pandas" if self is Backend.CPU else "cudf")


def namespaces(backend: Backend) -> tuple[ModuleType, ModuleType]:
    """Return ``(xp, xdf)`` for a backend."""
    return backend.xp, backend.xdf


def _gpu_libraries_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("cudf", "cupy"))


def cuda_device_count() -> int:
    """Count CUDA devices without creating a CUDA context."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return 0
    try:
        import pynvml  # nvidia-ml-py; a thin ctypes wrapper around libnvidia-ml

        pynvml.nvmlInit()
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        gpus = Path("/proc/driver/nvidia/gpus")
        count = sum(1 for _ in gpus.iterdir()) if gpus.is_dir() else 0
    if visible is not None and visible.strip():
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


def gpu_available() -> bool:
    """True when cuDF and CuPy are installed and at least one CUDA device is present."""
    return _gpu_libraries_installed() and cuda_device_count() > 0


def resolve(requested: str | Backend = "auto") -> Backend:
    """Turn a user's ``auto|cpu|gpu`` into a :class:`Backend`.

    ``gpu`` without a usable device is a :class:`UsageError`; ``auto`` falls back to the CPU with
    one log line saying why.
    """
    if isinstance(requested, Backend):
        return requested
    choice = str(requested).lower()
    if choice not in BACKEND_CHOICES:
        raise UsageError(f"--backend must be one of {', '.join(BACKEND_CHOICES)}, not {requested!r}")
    if choice == "cpu":
        return Backend.CPU
    libs = _gpu_libraries_installed()
    devices = cuda_device_count() if libs else 0
    if libs and devices > 0:
        return Backend.GPU
    why = (
        "cuDF/CuPy are not installed (pip install 'gpsgpu[gpu-cu13]' or '[gpu-cu12]')"
        if not libs
        else "no CUDA device is visible"
    )
    if choice == "gpu":
        raise UsageError(f"--backend gpu was requested but {why}")
    log.info("backend auto: using the CPU because %s", why)
    return Backend.CPU


def backend_of(obj: Any) -> Backend:
    """The backend that owns a frame, series or array (by the library its type comes from)."""
    module = type(obj).__module__ or ""
    return Backend.GPU if module.startswith(("cudf", "cupy", "dask_cudf")) else Backend.CPU


def xp_of(obj: Any) -> ModuleType:
    return backend_of(obj).xp


def xdf_of(obj: Any) -> ModuleType:
    return backend_of(obj).xdf


def to_backend(frame: Any, backend: Backend) -> Any:
    """Move a pandas/cuDF frame to ``backend`` (a no-op when it is already there)."""
    if backend_of(frame) is backend:
        return frame
    if backend is Backend.GPU:
        import cudf

        return cudf.from_pandas(frame)
    return frame.to_pandas()


def values_of(series: Any) -> Any:
    """The values of a pandas/cuDF series as a NumPy/CuPy array (on the series' own device)."""
    if backend_of(series) is Backend.GPU:
        return series.values
    return series.to_numpy()


def to_numpy(array: Any) -> Any:
    """A host NumPy array from a NumPy or CuPy array (or a pandas/cuDF series)."""
    if hasattr(array, "to_numpy") and backend_of(array) is Backend.CPU:
        return array.to_numpy()
    if backend_of(array) is Backend.GPU:
        if hasattr(array, "to_cupy"):
            array = array.to_cupy()
        return array.get()
    return array


_DEVICE_POOL = False
#: The RMM pool's first reservation; it grows by what the work needs.
INITIAL_POOL_BYTES = 1 << 28


def use_device_pool(*, statistics: bool = False) -> bool:
    """Give this process one RMM memory pool that cuDF and CuPy both allocate from.

    Called once by a command that runs on the GPU in its own process (dask-cuda workers get their
    pool from ``--cluster local-cuda``), before the first device allocation: without it CuPy keeps a
    pool of its own beside RMM's and the two starve each other. The pool starts at half of the
    device's memory and grows to all of it. ``statistics`` also counts allocations (peak bytes),
    which the benchmarks report. Returns False, after one warning, when RMM cannot be set up.
    """
    global _DEVICE_POOL
    if _DEVICE_POOL:
        return True
    try:
        import cupy
        import rmm
        from rmm.allocators.cupy import rmm_cupy_allocator

        rmm.reinitialize(pool_allocator=True, initial_pool_size=INITIAL_POOL_BYTES)
        cupy.cuda.set_allocator(rmm_cupy_allocator)
        if statistics:
            import rmm.statistics

            rmm.statistics.enable_statistics()
    except Exception as exc:
        log.warning("GPU: no RMM memory pool (%s: %s); cuDF and CuPy allocate apart", type(exc).__name__, exc)
        return False
    _DEVICE_POOL = True
    return True


def device_memory_used() -> tuple[int, int] | None:
    """``(current, peak)`` bytes allocated through RMM since :func:`use_device_pool` with
    ``statistics``; ``None`` when not counted."""
    if not _DEVICE_POOL:
        return None
    import rmm.statistics

    stats = rmm.statistics.get_statistics()
    return None if stats is None else (int(stats.current_bytes), int(stats.peak_bytes))

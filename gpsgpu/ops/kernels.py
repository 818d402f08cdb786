"""Where the CUDA sources are: ``kernels/`` in a checkout, ``gpsgpu/_kernels`` in an installed wheel.

No CUDA library is imported here, so tests can find (and ``nvcc``-compile) the sources on a machine
without a GPU.
"""

from __future__ import annotations

from pathlib import Path

from gpsgpu.errors import GpsgpuError

#: Every kernel source, ``kernels/<name>.cu``, with one ``extern "C"`` entry point of the same name.
KERNEL_NAMES: tuple[str, ...] = ("expand_pairs", "best_predictor")


def kernel_dirs() -> list[Path]:
    """Candidate folders, in order: the repository's ``kernels/``, the wheel's ``gpsgpu/_kernels``."""
    package = Path(__file__).resolve().parents[1]
    return [package.parent / "kernels", package / "_kernels"]


def kernel_path(name: str) -> Path:
    """The ``.cu`` source of kernel ``name``."""
    for folder in kernel_dirs():
        path = folder / f"{name}.cu"
        if path.is_file():
            return path
    searched = ", ".join(str(d) for d in kernel_dirs())
    raise GpsgpuError(f"CUDA kernel source {name}.cu not found (looked in {searched}); reinstall gpsgpu")

"""The one CPU/GPU switch, and import hygiene: ``import gpsgpu`` loads no GPU library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpsgpu import backend as backend_module
from gpsgpu.backend import Backend, backend_of, namespaces, resolve
from gpsgpu.errors import UsageError

GPU_MODULES = ("cupy", "cudf", "rmm", "dask_cudf", "dask_cuda", "numba.cuda", "pynvml")


def test_importing_gpsgpu_imports_no_gpu_library() -> None:
    code = (
        "import sys, gpsgpu, gpsgpu.cli, gpsgpu.backend, gpsgpu.schema, gpsgpu.io.ingest, gpsgpu.blocklist\n"
        f"loaded = [m for m in {GPU_MODULES!r} if m in sys.modules]\n"
        "print(','.join(loaded))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_resolve_cpu_and_bad_names() -> None:
    assert resolve("cpu") is Backend.CPU
    assert resolve(Backend.CPU) is Backend.CPU
    with pytest.raises(UsageError, match="one of"):
        resolve("tpu")


def test_gpu_without_device_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "_gpu_libraries_installed", lambda: True)
    monkeypatch.setattr(backend_module, "cuda_device_count", lambda: 0)
    with pytest.raises(UsageError, match="no CUDA device"):
        resolve("gpu")


def test_gpu_without_libraries_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "_gpu_libraries_installed", lambda: False)
    with pytest.raises(UsageError, match="not installed"):
        resolve("gpu")


def test_auto_falls_back_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(backend_module, "_gpu_libraries_installed", lambda: True)
    monkeypatch.setattr(backend_module, "cuda_device_count", lambda: 0)
    with caplog.at_level("INFO", logger="gpsgpu.backend"):
        assert resolve("auto") is Backend.CPU
    assert len(caplog.records) == 1 and "no CUDA device" in caplog.records[0].message


def test_auto_picks_gpu_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "_gpu_libraries_installed", lambda: True)
    monkeypatch.setattr(backend_module, "cuda_device_count", lambda: 2)
    assert resolve("auto") is Backend.GPU


def test_cuda_visible_devices_hides_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert backend_module.cuda_device_count() == 0


def test_backend_of_and_namespaces() -> None:
    assert backend_of(pd.DataFrame({"a": [1]})) is Backend.CPU
    assert backend_of(np.zeros(3)) is Backend.CPU
    xp, xdf = namespaces(Backend.CPU)
    assert xp is np and xdf is pd


@pytest.mark.gpu
def test_gpu_namespaces_and_detection() -> None:
    import cudf
    import cupy

    assert resolve("gpu") is Backend.GPU
    assert namespaces(Backend.GPU) == (cupy, cudf)
    assert backend_of(cudf.DataFrame({"a": [1]})) is Backend.GPU


def test_require_gpu_turns_the_skip_into_a_failure(tmp_path: Path) -> None:
    if backend_module.gpu_available():
        pytest.skip("a GPU is present: nothing to turn into a failure")
    test = tmp_path / "test_needs_gpu.py"
    test.write_text("import pytest\n\n@pytest.mark.gpu\ndef test_x():\n    pass\n")
    conftest = Path(__file__).with_name("conftest.py")
    (tmp_path / "conftest.py").write_text(conftest.read_text())
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)]
    skipped = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout
    failed = subprocess.run([*args, "--require-gpu"], capture_output=True, text=True, cwd=tmp_path)
    assert failed.returncode == 1 and "Failed: --require-gpu" in failed.stdout

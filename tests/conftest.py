"""Shared fixtures: the ``backend`` fixture runs a test on the CPU and, where a device exists, the GPU."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpsgpu.backend import Backend, gpu_available


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-gpu",
        action="store_true",
        default=False,
        help="fail (instead of skip) GPU tests when no CUDA device or no cuDF/CuPy is available",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if gpu_available() or config.getoption("--require-gpu"):
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="no CUDA device or cuDF/CuPy not installed"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    # With --require-gpu a GPU test on a machine without one is a failure, not a skip.
    if "gpu" in item.keywords and item.config.getoption("--require-gpu") and not gpu_available():
        pytest.fail("--require-gpu: no CUDA device, or cuDF/CuPy not installed", pytrace=False)


@pytest.fixture(params=[Backend.CPU, pytest.param(Backend.GPU, marks=pytest.mark.gpu)], ids=["cpu", "gpu"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def threads_cluster(request: pytest.FixtureRequest) -> Iterator[str]:
    """An in-process Dask cluster of ``request.param`` workers (threads, fast to start), by scheduler
    address. Worker processes (``--cluster local``) are covered by the CLI tests."""
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=request.param,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address

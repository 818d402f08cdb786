"""Stores for the ``gpsgpu serve`` tests: a small demo's model and plan, a model learnt with its counts,
and a distances folder with darknet windows (day, week) and the model's co-location window; and, for
the browser tests, an app served in a thread and a headless Chromium."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpsgpu.cli import app
from gpsgpu.config import DemoConfig, PortdistBuildConfig, PortdistSimulateConfig
from gpsgpu.pipelines.demo import run_demo
from gpsgpu.pipelines.portdist import run_portdist_build, run_portdist_simulate


def build_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"demo", "model", "plan", "dist"}``, made once per test session (about 5 s)."""
    root = tmp_path_factory.getbasetemp() / "serve-stores"
    paths = {
        "demo": root / "demo",
        "model": root / "model",
        "plan": root / "demo" / "campaign" / "steps" / "001",  # the compatible campaign's plan step
        "dist": root / "dist",
    }
    if (root / "done").is_file():
        return paths
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run_demo(
            paths["demo"], config=DemoConfig(hosts=20_000, seed_fraction=0.05, xgboost=False, backend="cpu")
        )
        app(
            ["learn", str(paths["demo"] / "net" / "seed.parquet"), "-o", str(paths["model"]), "--save-counts",
             "--backend", "cpu"],
            standalone_mode=False,
        )  # fmt: skip
        run_portdist_simulate(root / "sim", PortdistSimulateConfig(probes_per_day=30_000, days=2, seed=3))
        run_portdist_build(
            [str(root / "sim")], paths["dist"], PortdistBuildConfig(windows=("day", "week"), backend="cpu")
        )
        run_portdist_build(
            [], paths["dist"], PortdistBuildConfig(windows=(), from_model=str(paths["model"]), backend="cpu")
        )
    (root / "done").write_text("ok\n")
    return paths


CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests may run as root (CI containers)
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # only the page's own requests may happen
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1280,1500",
)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium through Selenium; skips the test without them."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no Chromium/ChromeDriver installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, in a thread of this process; yields its base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

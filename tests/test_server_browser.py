"""``gpsgpu serve`` end to end in a real headless Chromium: load the page from a live server on
127.0.0.1, search a port, check the neighbours shown are the API's, compare two ports, switch the
window, and save a screenshot.

Drives the system's Chromium (Debian ``chromium`` + ``chromium-driver``) through Selenium. Without
them the test skips, with the reason, unless ``CI`` is set: there it fails (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_data import build_stores

API = "/api/v1"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests may run as root (CI containers)
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # nothing may leave the machine, not even Chromium's own calls
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1280,1500",
)


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs chromium and chromium-driver)")
    pytest.skip(reason)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium = _find("chromium", "/usr/bin/chromium", "chromium-browser")
    driver_path = _find("chromedriver", "/usr/bin/chromedriver")
    if chromium is None or driver_path is None:
        _missing("no Chromium/ChromeDriver installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'gpsgpu[web]')")
    import httpx

    stores = build_stores(tmp_path_factory)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gpsgpu.cli", "serve", "--dist", str(stores["dist"]), "--model",
         str(stores["model"]), "--plan", str(stores["plan"]), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}{API}/health", timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "gpsgpu serve did not answer within 30 s"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _api(base: str, path: str) -> Any:
    import httpx

    response = httpx.get(f"{base}{API}{path}", timeout=10)
    response.raise_for_status()
    return response.json()


def _wait_for_search(driver: Any, port: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d: Any) -> bool:
        status = d.find_element(By.ID, "status")
        if "error" in (status.get_attribute("class") or ""):
            raise AssertionError(f"the page shows an error: {status.text}")
        return status.get_attribute("data-port") == str(port)

    WebDriverWait(driver, 20).until(done)


def _shown_neighbors(driver: Any) -> list[dict[str, Any]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#neighbors tbody tr")
    shown = []
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        shown.append({"port": int(cells[1].text), "distance": float(cells[2].text)})
    return shown


def test_search_compare_and_switch_in_chromium(browser: Any, server: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server + "/")
    _wait_for_search(browser, 80)  # the page searches its default port once the windows are listed

    # Search a port as a person would: type it, press the button.
    field = browser.find_element(By.ID, "port")
    field.clear()
    field.send_keys("443")
    browser.find_element(By.ID, "search-button").click()
    _wait_for_search(browser, 443)
    assert Select(browser.find_element(By.ID, "source")).first_selected_option.text == "darknet"
    window = Select(browser.find_element(By.ID, "window")).first_selected_option.get_attribute("value")
    want = _api(server, f"/distances/darknet/{window}/neighbors/443?k=10")["neighbors"]
    assert len(want) == 10
    assert _shown_neighbors(browser) == want
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart rect")
    assert len(bars) == len(want)
    widths = [float(b.get_attribute("width")) for b in bars]
    assert widths == sorted(widths)  # nearest first, bar length grows with distance

    # The predictors and the plan of the port, from the model and plan endpoints.
    predictors = _api(server, "/model/ports/443/predictors?limit=15")["predictors"]
    shown = browser.find_elements(By.CSS_SELECTOR, "#predictors tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in shown] == [str(p["port"]) for p in predictors]
    assert browser.find_element(By.ID, "model").is_displayed()
    plan = _api(server, "/plan/ports/443?limit=5")
    assert f"{plan['n_rows']} plan rows scan port 443" in browser.find_element(By.ID, "plan-summary").text

    # Compare two ports: the distance and P(a|b) shown are the API's.
    for name, value in (("port-a", "80"), ("port-b", "8080")):
        box = browser.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "compare-button").click()
    WebDriverWait(browser, 20).until(lambda d: "P(80|8080)" in d.find_element(By.ID, "compare-result").text)
    distance = _api(server, f"/distances/darknet/{window}/distance/80/8080")["distance"]
    assert f"distance(80, 8080) = {distance}" in browser.find_element(By.ID, "compare-result").text

    # Switch the window and the source: the table follows the API again.
    Select(browser.find_element(By.ID, "window")).select_by_value("day")
    WebDriverWait(browser, 20).until(lambda d: "darknet/day" in d.find_element(By.ID, "nearest-title").text)
    _wait_for_search(browser, 443)
    assert _shown_neighbors(browser) == _api(server, "/distances/darknet/day/neighbors/443?k=10")["neighbors"]
    assert (
        browser.find_element(By.ID, "download-csv")
        .get_attribute("href")
        .endswith("/distances/darknet/day/download?format=csv")
    )
    Select(browser.find_element(By.ID, "source")).select_by_value("model")
    WebDriverWait(browser, 20).until(lambda d: "model/seed" in d.find_element(By.ID, "nearest-title").text)
    _wait_for_search(browser, 443)
    assert _shown_neighbors(browser) == _api(server, "/distances/model/seed/neighbors/443?k=10")["neighbors"]

    # Back to the darknet week for the picture; everything the page loaded came from this server.
    Select(browser.find_element(By.ID, "source")).select_by_value("darknet")
    Select(browser.find_element(By.ID, "window")).select_by_value("week")
    WebDriverWait(browser, 20).until(lambda d: "darknet/week" in d.find_element(By.ID, "nearest-title").text)
    _wait_for_search(browser, 443)
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(server + "/") for url in loaded), loaded
    shot = tmp_path / "gpsgpu-serve.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

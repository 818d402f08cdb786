"""``gpsgpu serve``'s ``/docs``: Swagger UI from the package, so the docs work with no Internet access.

The page names only this server's URLs, those answer with the vendored files, the files ship in the
wheel, and (where Chromium is installed) Swagger UI really renders the schema with no outside request.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'gpsgpu[web]')")
pytest.importorskip("httpx", reason="the ASGI test client needs httpx")

from fastapi.testclient import TestClient
from server_data import chromium, live_server

from gpsgpu.server.app import SWAGGER_UI, create_app, static_dir

ROOT = Path(__file__).resolve().parents[1]
VENDORED = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


class _Links(HTMLParser):
    """Every ``src``/``href`` of a page, and the ``url:`` Swagger UI is told to load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def page_urls(html: str) -> list[str]:
    links = _Links()
    links.feed(html)
    return [*links.urls, *re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", html)]


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


def test_docs_name_only_local_urls_and_they_answer(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text
    urls = page_urls(page.text)
    assert {f"{SWAGGER_UI}/{name}" for name in VENDORED} | {"/openapi.json"} == set(urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        response = client.get(url)
        assert response.status_code == 200, url
        if url.startswith(SWAGGER_UI):
            assert response.content == (static_dir() / "swagger-ui" / url.rsplit("/", 1)[1]).read_bytes()
    types = {url.rsplit(".", 1)[1]: client.get(url).headers["content-type"] for url in urls}
    assert types["js"].startswith(("text/javascript", "application/javascript"))
    assert types["css"].startswith("text/css") and types["png"] == "image/png"
    assert types["json"] == "application/json"
    assert '"validatorUrl": null' in page.text  # no badge fetched from validator.swagger.io


def test_docs_follow_the_root_path() -> None:
    behind = TestClient(create_app(), root_path="/gps")
    urls = page_urls(behind.get("/docs").text)
    assert urls and all(url.startswith("/gps/") for url in urls), urls


def test_redoc_is_off_and_docs_are_not_in_the_schema(client: TestClient) -> None:
    response = client.get("/redoc")
    assert response.status_code == 404 and response.json()["detail"]
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc", "/docs/oauth2-redirect"} & set(paths)


def test_vendored_files_are_recorded() -> None:
    folder = static_dir() / "swagger-ui"
    sources = (folder / "SOURCES.md").read_text(encoding="utf-8")
    version = re.search(r"swagger-ui-dist` \*\*(\d+\.\d+\.\d+)\*\*", sources)
    assert version and int(version.group(1).split(".")[0]) >= 5  # 4.x cannot render OpenAPI 3.1
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")
    import hashlib

    for name in VENDORED:
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert f"| {name} | {digest} |" in sources, f"{name} changed without SOURCES.md"


def test_the_wheel_ships_the_page_and_swagger_ui(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="building the wheel offline needs hatchling installed")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("gpsgpu-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*VENDORED, "LICENSE", "NOTICE", "SOURCES.md"):
        assert f"gpsgpu/server/static/swagger-ui/{name}" in names
    for name in ("index.html", "app.js", "style.css"):
        assert f"gpsgpu/server/static/{name}" in names


def test_swagger_ui_renders_offline_in_chromium() -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as browser, live_server(create_app()) as base:
        browser.get(f"{base}/docs")
        paths = (By.CSS_SELECTOR, ".opblock-summary-path")
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(*paths))
        shown = {e.text.replace("\u200b", "") for e in browser.find_elements(*paths)}
        assert "/api/v1/health" in shown and len(shown) >= 10, shown
        assert not browser.find_elements(By.CSS_SELECTOR, ".errors-wrapper")  # a schema it could not read
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(base + "/") for url in loaded), loaded

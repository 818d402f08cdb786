"""``gpsgpu serve``: the REST API through the ASGI test client, checked against the CLI and the stores."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'gpsgpu[web]')")
pytest.importorskip("httpx", reason="the ASGI test client needs httpx")

from fastapi.testclient import TestClient
from server_data import build_stores, chromium, live_server

from gpsgpu.features.labels import FeatureLabel, describe_feature
from gpsgpu.io.portdist import read_window
from gpsgpu.pipelines.portdist import (
    run_portdist_distance,
    run_portdist_export,
    run_portdist_neighbors,
)
from gpsgpu.server.app import MAX_K, create_app, static_dir

API = "/api/v1"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_stores(tmp_path_factory)


@pytest.fixture(scope="module")
def client(stores: dict[str, Path]) -> TestClient:
    return TestClient(create_app(dists=[stores["dist"]], model=stores["model"], plan=stores["plan"]))


def quiet(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a CLI pipeline function without its JSON on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)


def ok(client: TestClient, path: str) -> Any:
    response = client.get(API + path)
    assert response.status_code == 200, response.text
    return response.json()


def test_health_version_and_windows(client: TestClient) -> None:
    assert ok(client, "/health") == {"status": "ok", "windows": 3, "model": True, "plan": True}
    version = ok(client, "/version")
    assert version["api"] == "v1" and version["dist_format"] == 1 and version["model_format"] == 1
    windows = {(w["source"], w["window"]): w for w in ok(client, "/distances/windows")}
    assert set(windows) == {("darknet", "day"), ("darknet", "week"), ("model", "seed")}
    assert all(w["ports"] > 10 and w["edges"] > 10 and w["store_k"] == 64 for w in windows.values())


@pytest.mark.parametrize(("source", "window"), [("darknet", "day"), ("darknet", "week"), ("model", "seed")])
@pytest.mark.parametrize("k", [1, 10, 64, 100])
def test_neighbors_equal_the_cli(
    client: TestClient, stores: dict[str, Path], source: str, window: str, k: int
) -> None:
    stored = read_window(stores["dist"], source, window)
    ports = [*stored.neighbors["port"].drop_duplicates().head(5).tolist(), 61_999]  # 61999: never seen
    for port in ports:
        got = ok(client, f"/distances/{source}/{window}/neighbors/{port}?k={k}")
        want = quiet(run_portdist_neighbors, stores["dist"], port, k=k, source=source, window=window)
        assert got["neighbors"] == want["neighbors"]  # k > 64 (stored) is computed on demand in both
        assert got["observed"] == want["observed"] and got["k"] == k


def test_distance_equals_the_cli(client: TestClient, stores: dict[str, Path]) -> None:
    for a, b in [(80, 443), (80, 8080), (22, 2222), (443, 80), (80, 80), (80, 61_999), (61_999, 61_999)]:
        got = ok(client, f"/distances/darknet/week/distance/{a}/{b}")
        want = quiet(run_portdist_distance, stores["dist"], a, b, source="darknet", window="week")
        assert got["distance"] == want["distance"], (a, b)
        assert got["observed"] == want["observed"]
    assert ok(client, "/distances/darknet/week/distance/80/61999")["distance"] is None


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("k", [None, 5])
def test_download_equals_the_export(
    client: TestClient, stores: dict[str, Path], tmp_path: Path, fmt: str, k: int | None
) -> None:
    query = f"?format={fmt}" + (f"&k={k}" if k else "")
    response = client.get(f"{API}/distances/darknet/day/download{query}")
    assert response.status_code == 200
    assert response.headers["content-disposition"].endswith(f'.{fmt}"')
    exported = tmp_path / f"export.{fmt}"
    with contextlib.redirect_stderr(io.StringIO()):
        run_portdist_export(stores["dist"], str(exported), source="darknet", window="day", k=k, fmt=fmt)
    if fmt == "csv":
        assert response.headers["content-type"].startswith("text/csv")
        assert response.content == exported.read_bytes()
    else:
        got = pq.read_table(io.BytesIO(response.content))
        assert got.equals(pq.read_table(exported)) and got.num_rows > 100


def test_predictors_come_from_the_patterns(client: TestClient, stores: dict[str, Path]) -> None:
    patterns = pd.read_parquet(stores["model"] / "patterns.parquet")
    for port in patterns["neededP"].value_counts().head(5).index.tolist():
        got = ok(client, f"/model/ports/{port}/predictors?limit=10000")
        mine = patterns[patterns["neededP"] == port]
        known = mine[mine["p"].notna()]
        assert got["n_unpredicted"] == int(mine["p"].isna().sum())
        assert got["n_predictors"] == len(known.groupby(["p", "server"])) == len(got["predictors"])
        assert sum(p["n_services"] for p in got["predictors"]) == len(known)
        hitrates = [p["hitrate"] for p in got["predictors"]]
        assert hitrates == sorted(hitrates, reverse=True)
        for p in got["predictors"]:
            assert p["hitrate"] == pytest.approx(p["count_p2"] / p["cp_server"])
            described = describe_feature(p["feature"])
            assert (p["kind"], p["label"]) == (described.kind, described.label) and p["kind"] != "unknown"
            rows = known[(known["p"] == p["port"]) & (known["server"] == p["feature"])]
            assert len(rows) == p["n_services"] and rows["hitrate"].max() == p["hitrate"]
        top = ok(client, f"/model/ports/{port}/predictors?limit=2")
        assert top["predictors"] == got["predictors"][:2]
    assert ok(client, "/model/ports/61999/predictors") == {
        "port": 61_999,
        "n_predictors": 0,
        "n_unpredicted": 0,
        "predictors": [],
    }


def test_rules_predict_the_port(client: TestClient, stores: dict[str, Path]) -> None:
    rules = pd.read_parquet(stores["model"] / "rules.parquet")
    for port in rules["neededP"].value_counts().head(5).index.tolist():
        got = ok(client, f"/model/ports/{port}/rules?limit=10000")
        mine = rules[rules["neededP"] == port]
        assert got["n_rules"] == len(mine) == len(got["rules"])
        scores = [r["score"] for r in got["rules"]]
        assert scores == sorted(scores, reverse=True)
        assert sorted(int(r["fkey"]) for r in got["rules"]) == sorted(mine["fkey"].tolist())
        assert all(r["label"] == describe_feature(r["feature"]).label for r in got["rules"])


@pytest.mark.parametrize(
    ("feature", "kind", "label"),
    [
        ("s19: 69cc8000", "network /19", "network 105.204.128.0/19"),
        ("s24: 01020300", "network /24", "network 1.2.3.0/24"),
        ("asn: 2305", "AS", "AS2305"),
        ("L4", "port open", "any service on the port (layer 4)"),
        ("fingerprint: http", "protocol", 'protocol "http"'),
        ("window: 29200", "TCP window", "TCP window 29200"),
        ("http line: Server: nginx\r", "banner line", 'banner line "Server: nginx\\r"'),
        ("16:fingerprint: tls-0ee90000", "protocol in /16", 'protocol "tls" in network 14.233.0.0/16'),
        (
            "asn:http line: <title>x-y</title>-asn: 4489",
            "banner line in AS",
            'banner line "<title>x-y</title>" in AS4489',
        ),
        ("tls oid: 0906035504060c025553310f", "TLS certificate fragment", "TLS certificate fragment C=US"),
        ("http server: lighttpd/1.4", "HTTP Server header", 'HTTP Server header "lighttpd/1.4"'),
        ("cwmp header: server: x", "CWMP (TR-069) header", 'CWMP (TR-069) header "server: x"'),
        ("ssh hostkey: " + "ab" * 32, "SSH host key SHA-256", "SSH host key SHA-256 abababababab…"),
        (
            "16:mysql version: 8.0.36-0a000000",
            "MySQL version in /16",
            'MySQL version "8.0.36" in network 10.0.0.0/16',
        ),
        ("no such kind: 1", "unknown", '"no such kind: 1"'),
    ],
)
def test_feature_labels(feature: str, kind: str, label: str) -> None:
    assert describe_feature(feature) == FeatureLabel(kind, label)


def test_feature_labels_read_certificates_in_banners() -> None:
    name = "0603550403" + "0c" + "07" + b"gps.lan".hex()  # OID 2.5.4.3 (CN), UTF8String "gps.lan"
    flight = "16030300" + "00" * 40 + (name * 2)  # a self-signed certificate names itself twice
    described = describe_feature(f"http line: {flight}")
    assert described.kind == "banner line"
    assert (
        described.label == f"banner line TLS handshake ({len(flight) // 2} bytes) with certificate CN=gps.lan"
    )
    assert describe_feature(f"tls cert: {flight}").label.endswith(" CN=gps.lan")


def test_every_feature_string_of_both_presets_has_a_kind(stores: dict[str, Path]) -> None:
    import pyarrow.parquet as pq

    from gpsgpu.features import extended, feature_arrays_of_table
    from gpsgpu.features.labels import DATA_KINDS

    seed = pq.read_table(stores["demo"] / "net" / "seed.parquet")
    for preset in ("gps2022", "extended"):
        strings = feature_arrays_of_table(seed, preset=preset).strings.materialize().to_pylist()
        unknown = [f for f in strings if describe_feature(f).kind == "unknown"]
        assert strings and not unknown, unknown[:5]
    # Fields the simulated banners never carry still have their kind.
    names = [f"{e} {n}" for n in (*extended._HTTP_FIELDS, "header") for e in ("http", "cwmp")]
    assert set(names) | set(extended._OTHER_FIELDS) <= set(DATA_KINDS)


def test_conditional_from_saved_counts(client: TestClient, stores: dict[str, Path]) -> None:
    import xxhash

    from gpsgpu.portdist.colocation import L4_FEATURE

    l4 = xxhash.xxh64_intdigest(L4_FEATURE.encode(), seed=0)
    pairs = pd.read_parquet(stores["model"] / "count_p2.parquet")
    hosts = pd.read_parquet(stores["model"] / "cp_server.parquet")
    pairs = pairs[pairs["fkey"].astype(np.uint64) == np.uint64(l4)]
    hosts = hosts[hosts["fkey"].astype(np.uint64) == np.uint64(l4)].set_index("p1")["cp_server"]
    for row in pairs.head(20).itertuples():
        b, a = int(row.p1), int(row.p2)
        got = ok(client, f"/model/conditional/{a}/{b}")
        assert got["n_both"] == row.count_p2 and got["n_b"] == hosts[b]
        assert got["probability"] == pytest.approx(row.count_p2 / hosts[b])
        assert got["counts_from"].startswith("count_p2")
    none = ok(client, "/model/conditional/80/61999")
    assert none["n_b"] == 0 and none["probability"] is None


def test_conditional_from_the_seed_without_counts(stores: dict[str, Path]) -> None:
    demo = TestClient(create_app(model=stores["demo"] / "model"))
    seed = pd.read_parquet(stores["demo"] / "model" / "seed.parquet")
    by_host = seed.groupby("ip")["port"].apply(set)
    for a, b in [(443, 80), (80, 443), (22, 80), (25, 465)]:
        got = demo.get(f"{API}/model/conditional/{a}/{b}").json()
        with_b = by_host[by_host.map(lambda ports, b=b: b in ports)]
        both = int(with_b.map(lambda ports, a=a: a in ports).sum())
        assert (got["n_both"], got["n_b"]) == (both, len(with_b))
        assert got["counts_from"].startswith("seed")


def test_plan_budget_and_rows(client: TestClient, stores: dict[str, Path]) -> None:
    csv = next(stores["plan"].glob("priors_scan_*.csv"))
    lines = pd.read_csv(csv, header=None, names=["port", "cidr"])
    plan = ok(client, "/plan")
    assert plan["rows"] == len(lines) and plan["step"] == 16 and plan["probes_per_row"] == 65_536
    assert [b["port"] for b in plan["ports"]] == list(dict.fromkeys(lines["port"]))  # plan order
    assert sum(b["rows"] for b in plan["ports"]) == len(lines)
    assert sum(b["share"] for b in plan["ports"]) == pytest.approx(1.0)
    for budget in plan["ports"][:5]:
        port = budget["port"]
        rows = ok(client, f"/plan/ports/{port}?limit=10000")
        want = lines[lines["port"] == port]
        assert rows["n_rows"] == budget["rows"] == len(want)
        assert [r["row"] for r in rows["rows"]] == want.index.tolist()
        assert [r["cidr"] for r in rows["rows"]] == want["cidr"].tolist()
        assert rows["rows"][0]["row"] == budget["first_row"]
        page = ok(client, f"/plan/ports/{port}?offset=1&limit=2")
        assert page["rows"] == rows["rows"][1:3]
    assert ok(client, "/plan/ports/61999") == {"port": 61_999, "n_rows": 0, "offset": 0, "rows": []}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/distances/darknet/day/neighbors/65536", 422),
        ("/distances/darknet/day/neighbors/-1", 422),
        ("/distances/darknet/day/neighbors/http", 422),
        ("/distances/darknet/day/neighbors/80.5", 422),
        ("/distances/darknet/day/neighbors/99999999999999999999999999", 422),
        ("/distances/darknet/day/neighbors/80?k=0", 422),
        ("/distances/darknet/day/neighbors/80?k=-3", 422),
        (f"/distances/darknet/day/neighbors/80?k={MAX_K + 1}", 422),
        ("/distances/darknet/day/neighbors/80?k=ten", 422),
        ("/distances/darknet/year/neighbors/80", 404),
        ("/distances/model/day/neighbors/80", 404),
        ("/distances/nosuch/day/neighbors/80", 422),
        ("/distances/darknet/day/distance/80/70000", 422),
        ("/distances/darknet/day/distance/80", 404),
        ("/distances/darknet/day/download?format=xlsx", 422),
        ("/distances/darknet/day/download?k=0", 422),
        ("/model/ports/70000/predictors", 422),
        ("/model/ports/80/predictors?limit=0", 422),
        ("/model/ports/80/rules?limit=100000", 422),
        ("/model/conditional/80/x", 422),
        ("/plan/ports/80?offset=-1", 422),
        ("/nothing/here", 404),
    ],
)
def test_bad_input_is_a_json_4xx(client: TestClient, path: str, status: int) -> None:
    response = client.get(API + path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]


def test_unknown_paths_and_methods(client: TestClient) -> None:
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/static/nothing.js").status_code == 404
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)(f"{API}/distances/darknet/day/neighbors/80")
        assert response.status_code == 405 and response.json()["detail"]


def test_nothing_loaded_is_a_404_not_a_500(stores: dict[str, Path]) -> None:
    bare = TestClient(create_app(dists=[stores["dist"]]))
    assert bare.get(f"{API}/health").json() == {"status": "ok", "windows": 3, "model": False, "plan": False}
    for path in (
        "/model",
        "/model/ports/80/predictors",
        "/model/conditional/80/443",
        "/plan",
        "/plan/ports/80",
    ):
        response = bare.get(API + path)
        assert response.status_code == 404 and "--" in response.json()["detail"]


def test_read_only(client: TestClient, stores: dict[str, Path]) -> None:
    schema = client.get("/openapi.json").json()
    methods = {m for item in schema["paths"].values() for m in item}
    assert methods == {"get"}
    assert {"/docs"} and client.get("/docs").status_code == 200

    def snapshot() -> dict[str, tuple[int, int]]:
        return {
            str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for key in ("dist", "model", "demo")
            for p in stores[key].rglob("*")
        }

    before = snapshot()
    ok(client, "/distances/darknet/week/neighbors/80?k=200")
    client.get(f"{API}/distances/darknet/week/download?format=parquet")
    ok(client, "/plan")
    assert snapshot() == before


def test_the_page_is_static_and_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # The page's own files; static/swagger-ui/ is the vendored /docs (tests/test_server_docs.py).
    for path in (p for p in static_dir().iterdir() if p.is_file()):
        text = path.read_text(encoding="utf-8")
        # Nothing fetched from outside: no absolute URLs but the SVG namespace (a name, not a fetch).
        assert "https://" not in text and text.replace("http://www.w3.org/2000/svg", "").count("http://") == 0
        if path.suffix == ".js":
            assert all(call.startswith(("API", "(API")) for call in text.split("fetch(")[1:])


# --- serving the demo's output (the README's `gpsgpu serve --model gpsgpu-demo/model --plan ...`) ----


@pytest.fixture(scope="module")
def demo_app(stores: dict[str, Path]) -> Any:
    """The app over exactly what ``gpsgpu demo`` writes: its model and plan, no distances."""
    return create_app(model=stores["demo"] / "model", plan=stores["demo"] / "campaign" / "steps" / "001")


def test_the_demo_output_fills_the_model_and_plan_endpoints(demo_app: Any) -> None:
    demo = TestClient(demo_app)
    assert demo.get(f"{API}/health").json() == {"status": "ok", "windows": 0, "model": True, "plan": True}
    model = demo.get(f"{API}/model").json()
    assert model["preset"] and model["rules"] > 0 and model["predictor_rows"] > 0
    assert model["counts"]["n_services"] > 0 and model["counts"]["n_hosts"] > 0
    plan = demo.get(f"{API}/plan").json()
    assert plan["rows"] > 0 and plan["ports"] and plan["ports"][0]["rows"] > 0
    # What the page asks for its default port (80) and for the plan's first port.
    for port in (80, plan["ports"][0]["port"]):
        predictors = demo.get(f"{API}/model/ports/{port}/predictors?limit=15").json()
        assert predictors["n_predictors"] > 0 and predictors["predictors"], port
        assert all(p["feature"] for p in predictors["predictors"])
        rows = demo.get(f"{API}/plan/ports/{port}?limit=5").json()
        assert rows["n_rows"] > 0 and rows["rows"][0]["cidr"].endswith("/16"), port
        assert demo.get(f"{API}/model/conditional/{port}/443").json()["n_b"] > 0
    assert demo.get(f"{API}/distances/windows").json() == []


def test_the_demo_folder_itself_names_its_model_and_plan(stores: dict[str, Path]) -> None:
    from gpsgpu.errors import InputError
    from gpsgpu.server.stores import load_stores

    for part, inside in (("model", "model"), ("plan", "campaign/steps/001")):
        with pytest.raises(InputError, match=f"give --{part} .*{inside}"):
            load_stores(**{part: stores["demo"]})


def test_the_page_over_the_demo_output_in_chromium(demo_app: Any) -> None:
    """With no distance windows the page still searches its port: model and plan sections filled."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as browser, live_server(demo_app) as base:
        browser.get(f"{base}/")

        def searched(d: Any) -> bool:
            status = d.find_element(By.ID, "status")
            assert "error" not in (status.get_attribute("class") or ""), status.text
            return status.get_attribute("data-port") == "80"

        WebDriverWait(browser, 30).until(searched)
        client = TestClient(demo_app)
        assert browser.find_element(By.ID, "model").is_displayed()
        assert browser.find_element(By.ID, "plan").is_displayed()
        assert not browser.find_element(By.ID, "nearest").is_displayed()
        assert not browser.find_element(By.ID, "source-label").is_displayed()
        want = client.get(f"{API}/model/ports/80/predictors?limit=15").json()["predictors"]
        shown = browser.find_elements(By.CSS_SELECTOR, "#predictors tbody tr")
        cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in shown]
        assert want and [c[:3] for c in cells] == [[str(p["port"]), p["kind"], p["label"]] for p in want]
        assert "rules" in browser.find_element(By.ID, "model-info").text
        rows = client.get(f"{API}/plan/ports/80?limit=5").json()
        assert f"{rows['n_rows']} plan rows scan port 80" in browser.find_element(By.ID, "plan-summary").text
        budget = client.get(f"{API}/plan").json()["ports"]
        shown = browser.find_elements(By.CSS_SELECTOR, "#plan-budget tbody tr")
        assert [r.get_attribute("data-port") for r in shown] == [str(b["port"]) for b in budget[:12]]
        browser.find_element(By.ID, "compare-button").click()
        WebDriverWait(browser, 20).until(
            lambda d: "P(80|443)" in d.find_element(By.ID, "compare-result").text
        )
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(base + "/") for url in loaded), loaded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(*args: str, timeout: float = 60) -> tuple[subprocess.Popen[str], int, dict[str, Any]]:
    """``gpsgpu serve ARGS`` on a free loopback port, once its health endpoint answers."""
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gpsgpu.cli", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server, port, httpx.get(f"http://127.0.0.1:{port}{API}/health", timeout=2).json()
        except httpx.TransportError:
            if server.poll() is not None:
                raise AssertionError(f"gpsgpu serve exited: {server.communicate()[1]}") from None
            if time.monotonic() > deadline:
                server.terminate()
                server.communicate(timeout=30)
                raise AssertionError(f"gpsgpu serve did not start in {timeout:.0f} s") from None
            time.sleep(0.2)


def test_cli_serves_and_refuses_bad_stores(stores: dict[str, Path], tmp_path: Path) -> None:
    def gpsgpu(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gpsgpu.cli", *args], capture_output=True, text=True, timeout=timeout
        )

    nothing = gpsgpu("serve")
    assert nothing.returncode == 2 and "nothing to serve" in nothing.stderr
    missing = gpsgpu("serve", "--dist", str(tmp_path / "nope"))
    assert missing.returncode == 3 and "not a distances folder" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = gpsgpu("serve", "--dist", str(stores["dist"]), "--port", "70000")
    assert bad.returncode == 2 and "0..65535" in bad.stderr

    import httpx

    server, port, health = start_server("--dist", str(stores["dist"]), "--model", str(stores["model"]))
    try:
        assert health == {"status": "ok", "windows": 3, "model": True, "plan": False}
        got = httpx.get(f"http://127.0.0.1:{port}{API}/distances/darknet/week/neighbors/80?k=3").json()
        want = quiet(run_portdist_neighbors, stores["dist"], 80, k=3, source="darknet", window="week")
        assert json.loads(json.dumps(got["neighbors"])) == want["neighbors"]
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "gpsgpu: serve: 3 window(s), model on http://127.0.0.1" in err


def test_worker_listener_keeps_tcp_nodelay() -> None:
    """The multi-worker listener states IPPROTO_TCP, so asyncio turns Nagle off on each connection."""
    import asyncio

    from gpsgpu.server.nodelay import NodelayConfig

    listener = NodelayConfig("gpsgpu.pipelines.serve:app_from_environment", host="127.0.0.1", port=0)
    sock = listener.bind_socket()
    assert sock.proto == socket.IPPROTO_TCP and sock.get_inheritable()
    accepted: list[int] = []

    async def check() -> None:
        def made() -> asyncio.Protocol:
            class Probe(asyncio.Protocol):
                def connection_made(self, transport: Any) -> None:
                    raw = transport.get_extra_info("socket")
                    accepted.append(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                    transport.close()

            return Probe()

        server = await asyncio.get_running_loop().create_server(made, sock=sock)
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(check())
    assert accepted and accepted[0] != 0


def test_cli_serves_with_two_workers(stores: dict[str, Path]) -> None:
    import httpx

    server, port, health = start_server("--dist", str(stores["dist"]), "--workers", "2")
    try:
        assert health["status"] == "ok" and health["windows"] == 3
        with httpx.Client() as client:  # one keep-alive connection, several requests
            answers = [client.get(f"http://127.0.0.1:{port}{API}/distances/darknet/week/neighbors/80?k=3")
                       for _ in range(5)]  # fmt: skip
        assert all(a.status_code == 200 for a in answers)
        assert len({json.dumps(a.json()["neighbors"]) for a in answers}) == 1
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "(2 worker(s)" in err and "Traceback" not in err

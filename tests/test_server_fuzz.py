"""``gpsgpu serve``: a property-based fuzz of every endpoint, generated from the app's OpenAPI schema.

Schemathesis draws valid and invalid requests for each operation (bounded examples) and runs all its
checks on every response: no 5xx, status codes and content types the schema documents, bodies that
match the response models. Without schemathesis the test skips, except in CI, where it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("CI") is None:
    pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[test]')")
    pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'gpsgpu[web]')")

import schemathesis
from hypothesis import HealthCheck, settings
from server_data import build_stores

from gpsgpu.server.app import create_app


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> schemathesis.BaseSchema:
    stores: dict[str, Path] = build_stores(tmp_path_factory)
    app = create_app(dists=[stores["dist"]], model=stores["model"], plan=stores["plan"])
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_endpoint_survives_the_fuzz(case: schemathesis.Case) -> None:
    response = case.call_and_validate()
    assert response.status_code < 500
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/json"] and response.json()["detail"]

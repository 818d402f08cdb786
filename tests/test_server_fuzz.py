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
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from server_data import build_stores

from gpsgpu.server.app import create_app

# Driven through schemathesis's strategies rather than its pytest plugin (``from_fixture``), whose
# reliance on pytest internals broke with pytest 9.2 (``'Function' object has no attribute '_nodeid'``).
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _fuzz(case: schemathesis.Case) -> None:
    response = case.call_and_validate()
    assert response.status_code < 500
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/json"] and response.json()["detail"]


def test_every_endpoint_survives_the_fuzz(tmp_path_factory: pytest.TempPathFactory) -> None:
    stores: dict[str, Path] = build_stores(tmp_path_factory)
    app = create_app(dists=[stores["dist"]], model=stores["model"], plan=stores["plan"])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @FUZZ
            @given(case=strategy)
            def fuzz(case: schemathesis.Case) -> None:
                _fuzz(case)

            try:
                fuzz()
            except Unsatisfiable:
                # An operation without parameters has no invalid request to draw.
                has_parameters = operation.path_parameters or operation.query
                assert mode is GenerationMode.NEGATIVE and not has_parameters
            except Exception as failure:
                raise AssertionError(f"{operation.label} ({mode.value}): {failure}") from failure

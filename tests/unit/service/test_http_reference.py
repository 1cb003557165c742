"""The HTTP reference is written from the service's own OpenAPI document; the committed page
(docs/reference/http.md) is what the generator writes now."""

from __future__ import annotations

import importlib.util

from conftest import REPO

from cvsweep.service.http_reference import http_markdown, openapi_document


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference_http", REPO / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_route_of_the_service_is_in_the_page():
    document = openapi_document()
    page = http_markdown(document)
    routes = [(method.upper(), path) for path, ops in document["paths"].items() for method in ops]
    assert ("POST", "/sweeps") in routes and ("GET", "/sweeps/{sweep_id}/events") in routes
    for method, path in routes:
        assert f"## `{method} {path}`" in page


def test_the_committed_http_page_is_current():
    generator = _generator()
    committed = (REPO / "docs" / "reference" / "http.md").read_text()
    assert committed == generator.http_page(), (
        f"docs/reference/http.md is stale: run `{generator.COMMAND}` and commit the page")

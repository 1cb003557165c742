"""The HTTP reference (docs/reference/http.md), written from the service's own OpenAPI document:
every route, its parameters, its body and its answers, as FastAPI declares them."""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any, Mapping

from cvsweep.service.app import create_app
from cvsweep.service.settings import ServeSettings

OPENAPI_PATH = "/openapi.json"


def openapi_document() -> dict:
    """The OpenAPI document the service serves at /openapi.json, from an app built with the
    default settings over an empty outputs folder (nothing is started or kept).

    Returns:
        The document as plain data.
    """
    with tempfile.TemporaryDirectory(prefix="cvsweep-openapi-") as root:
        app = create_app(ServeSettings(output_root=root))
        return asyncio.run(_get(app, OPENAPI_PATH))


async def _get(app, path: str) -> dict:
    """One GET through the ASGI app, as a client on loopback sends it."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
    return json.loads(body)


def http_markdown(document: Mapping[str, Any], header: str = "") -> str:
    """The reference page: ``header``, then each route of the document with its parameters,
    request body and responses.

    Args:
        document: An OpenAPI document (``openapi_document()``).
        header: Markdown put before the first route.

    Returns:
        The page's Markdown, ending in one newline.
    """
    parts = [header.rstrip("\n")] if header else []
    schemas = document.get("components", {}).get("schemas", {})
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            parts.append(_operation_markdown(method.upper(), path, operation, schemas))
    if schemas:
        parts.append(_schemas_markdown(schemas))
    return "\n\n".join(parts) + "\n"


def _operation_markdown(method: str, path: str, operation: Mapping, schemas: Mapping) -> str:
    lines = [f"## `{method} {path}`", ""]
    summary = operation.get("summary")
    if summary:
        lines += [summary + ".", ""]
    if operation.get("description"):
        lines += [" ".join(operation["description"].split()), ""]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | type | required |", "| --- | --- | --- | --- |"]
        for parameter in parameters:
            lines.append(f"| `{parameter['name']}` | {parameter['in']} | {_type(parameter.get('schema', {}))} | "
                         f"{'yes' if parameter.get('required') else 'no'} |")
        lines.append("")
    body = operation.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            lines += [f"Request body ({media}): {_type(content.get('schema', {}))}.", ""]
    lines += ["| status | answer |", "| --- | --- |"]
    for status, response in operation.get("responses", {}).items():
        media = ", ".join(f"{m}: {_type(c.get('schema', {}))}" if c.get("schema") else m
                          for m, c in response.get("content", {}).items())
        answer = response.get("description", "")
        lines.append(f"| {status} | {answer}{' (' + media + ')' if media else ''} |")
    return "\n".join(lines)


def _schemas_markdown(schemas: Mapping) -> str:
    lines = ["## Schemas"]
    for name, schema in schemas.items():
        lines += ["", f"### {name}", ""]
        if schema.get("description"):
            lines += [" ".join(schema["description"].split()), ""]
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", []))
            lines += ["| field | type | required |", "| --- | --- | --- |"]
            for field, spec in properties.items():
                lines.append(f"| `{field}` | {_type(spec)} | {'yes' if field in required else 'no'} |")
    return "\n".join(lines)


def _type(schema: Mapping) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    return str(schema.get("type", "any"))

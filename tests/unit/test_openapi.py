"""The OpenAPI document a client generator or a developer reads: every body has an example."""

from __future__ import annotations

import json
from typing import Any

import pytest

from annostack.apps.main import create_app
from annostack.apps.settings import ApiSettings


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref") or next(
        (s["$ref"] for s in schema.get("anyOf", []) if "$ref" in s), None
    )
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def _has_example(spec: dict[str, Any], media: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    return "examples" in _resolve(spec, media.get("schema", {}))


@pytest.mark.parametrize("gateway", ["user", "admin"])
def test_every_json_request_and_response_body_has_an_example(gateway: str) -> None:
    api = ApiSettings(gateway=gateway, admin_token="x" * 32)
    spec = create_app(api=api).openapi()
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            bodies = [("request", operation.get("requestBody", {}))]
            bodies += [(code, r) for code, r in operation["responses"].items() if code < "300"]
            for where, body in bodies:
                media = body.get("content", {}).get("application/json")
                if media is None or path in ("/healthz", "/readyz"):
                    continue
                if not _has_example(spec, media):
                    missing.append(f"{method.upper()} {path} ({where})")
    assert not missing, "no example: " + json.dumps(missing, indent=1)

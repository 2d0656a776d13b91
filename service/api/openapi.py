"""The OpenAPI schema says what the service really answers: OpenAI-style JSON errors, never 422.

FastAPI documents a 422 ``HTTPValidationError`` on every operation, but the service turns
validation errors into 400s in OpenAI's error format (``service.api.errors``); and an error
response declared on an HTML or audio route is documented with that route's media type although
it is JSON. Clients generated from the schema, and the schema fuzzer, would both be misled, so the
schema is post-processed once: 422 goes, the errors that any operation can produce are added
(400 bad input, 401 bad API key, 404 unknown id in the path, 413 body over the limit, 500), and
every 4xx/5xx is ``application/json`` :class:`ErrorResponse`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.protocol import ErrorResponse

_REF = "#/components/schemas/ErrorResponse"


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the error responses of every operation in ``schema`` (in place) and return it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    defs = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in defs.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault("ErrorResponse", defs)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            codes = {"401", "500"}
            if operation.get("parameters") or operation.get("requestBody"):
                codes.add("400")
            if operation.get("requestBody"):
                codes.add("413")
            if "{" in path:
                codes.add("404")
            codes |= {code for code in responses if code[:1] in ("4", "5")}
            for code in sorted(codes):
                entry = responses.setdefault(code, {"description": HTTPStatus(int(code)).phrase})
                entry["content"] = {"application/json": {"schema": {"$ref": _REF}}}
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in components and unused not in str(schema.get("paths")):
            components.pop(unused)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the corrected schema at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

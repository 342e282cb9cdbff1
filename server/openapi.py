"""/openapi.json as the server really answers: every failure in one envelope.

FastAPI documents its own validation error (``{"detail": [...]}``) for every
route with parameters; Parley answers ``{"error": {"code", "message"}}``
instead (server/errors.py), for that and for everything else. This replaces
that schema with the real one and adds the failures every route of a kind
can give: 401 where a token is needed, 400 where a JSON body is read, 503
when a backing service is down. Routes name their own further failures with
``errors(...)`` in their decorator; the codes behind each status are in
docs/PROTOCOL.md.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable and machine-readable (docs/PROTOCOL.md lists them)",
                    "examples": ["invalid_request"],
                },
                "message": {
                    "type": "string",
                    "description": "For people: names the field or rule; may change",
                },
            },
        }
    },
}
_COMMON = {
    "400": "The body is not valid JSON (`malformed_json`)",
    "401": "No access token, or an expired or revoked one (`unauthenticated`, `token_expired`)",
    "422": "A field failed validation (`invalid_request`) or a rule of this route refused "
    "the request; `code` says which",
    "503": "A backing service is unavailable or the node is draining; retry after `Retry-After`",
}


def errors(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's own failures: ``errors(404, (413, "over the limit"))``."""
    out: dict[int | str, dict[str, Any]] = {}
    for entry in statuses:
        status, description = entry if isinstance(entry, tuple) else (entry, "")
        out[status] = {"description": description or HTTPStatus(status).phrase}
    return out


def install_openapi(api: FastAPI) -> None:
    """Serve the spec with the error envelope (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title,
                version=api.version,
                description=api.description,
                routes=api.routes,
            )
            api.openapi_schema = document_errors(schema)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = _ERROR_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if responses.get("422", {}).get("description") == "Validation Error":
                responses["422"] = {"description": _COMMON["422"]}  # FastAPI's, not ours
            if _reads_json(operation):
                responses.setdefault("400", {"description": _COMMON["400"]})
                responses.setdefault("422", {"description": _COMMON["422"]})
            if operation.get("security"):
                responses.setdefault("401", {"description": _COMMON["401"]})
            responses.setdefault("503", {"description": _COMMON["503"]})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = {"application/json": {"schema": _ERROR_REF}}
    return schema


def _reads_json(operation: dict[str, Any]) -> bool:
    body = operation.get("requestBody", {})
    return "application/json" in body.get("content", {})

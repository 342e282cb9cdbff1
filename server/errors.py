"""Renders every failure as ``{"error": {"code", "message"}}`` (ARCHITECTURE.md section 11)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from config.errors import ParleyError, RateLimitedError
from storage.availability import database_unavailable

log = logging.getLogger(__name__)

# What FastAPI raises when the body cannot be decoded at all.
_FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _describe(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return 400, "malformed_json", "request body is not valid JSON"
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg')}")
    return 422, "invalid_request", "; ".join(parts)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path.

    Starlette answers 405 from the first route whose path matched, which
    lists only its own methods; each FastAPI decorator is a route of its own.
    """
    methods: set[str] = set()
    path = request.scope["path"]
    for route in iter_route_contexts(request.app.router.routes):
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and pattern.match(path):
            methods |= route.methods or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ParleyError)
    async def parley_error(request: Request, exc: ParleyError) -> JSONResponse:
        headers = None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": str(exc.retry_after)}
        elif exc.status == 503:
            headers = {"Retry-After": "1"}
        elif exc.status == 401:
            headers = {"WWW-Authenticate": f'Bearer error="{exc.code}"'}
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _describe(exc)
        return error_response(status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_PARSE_ERROR:
            # Not UTF-8, or nested deeper than the JSON parser allows.
            return error_response(400, "malformed_json", "request body is not valid JSON")
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            message = f"{request.method} {request.url.path}: allowed are {', '.join(allowed)}"
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if (away := database_unavailable(exc)) is not None:
            log.warning("%s %s: database unavailable (%s)", request.method, request.url.path, exc)
            return await parley_error(request, away)
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error")

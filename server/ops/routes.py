"""Operational endpoints: liveness, readiness, Prometheus metrics, JWKS."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response

from config.errors import UnavailableError
from server.deps import ServicesDep
from storage import database

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; the body says why"}})
async def readyz(services: ServicesDep) -> Response:
    """Ready for traffic: the database and the key-value store answer, and not draining."""
    checks: dict[str, Any] = {}
    ready = True
    probes = (
        ("database", database.ping),
        ("kv", services.kv.ping),
        ("media", services.blobs.ping),
        ("search", services.search_index.ping),
    )
    for name, probe in probes:
        try:
            await probe()
            checks[name] = "ok"
        except UnavailableError as exc:
            checks[name] = exc.message
            ready = False
    if services.draining:
        checks["draining"] = True
        ready = False
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics of this node."""
    return Response(generate_latest(services.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/jwks.json")
async def jwks(services: ServicesDep) -> dict[str, Any]:
    """Public keys that verify Parley access tokens (RFC 7517)."""
    return services.keyring.verifier.jwks()

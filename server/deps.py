"""FastAPI dependencies: the process's services and the signed-in principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from config.errors import AuthenticationError
from realtime.hub import Principal
from server.auth.phone import ClientInfo
from server.container import Services

_bearer = HTTPBearer(auto_error=False, description="Access token from a sign-in")


# Dependencies are async so FastAPI does not hop to a thread pool to run them.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_principal(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("send an access token as `Authorization: Bearer <token>`")
    claims = services.keyring.verify(credentials.credentials)
    await services.sessions.ensure_not_revoked(claims.session_id)
    return Principal(user_id=claims.user_id, session_id=claims.session_id)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def client_info(request: Request) -> ClientInfo:
    host = request.client.host if request.client else "unknown"
    return ClientInfo(ip=host, user_agent=request.headers.get("user-agent", "")[:256])


ClientDep = Annotated[ClientInfo, Depends(client_info)]

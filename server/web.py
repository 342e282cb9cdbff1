"""The browser client (web/, built to web/dist) served at ``/`` by every node.

Files are listed once at start-up, so a request can only ever name one of
them (no path is joined from the URL). A path that matches no file and no API
route gets ``index.html``, so the client's own routes survive a reload; the
API's prefixes (``/v1``, ``/docs``, ``/socket.io``...) never do: they keep
their JSON 404s. The handler is the router's fallback, not a route, so API
routes keep their 405s and nothing here shadows them.

Without a build the node serves the API alone and says so once in its log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

DEFAULT_WEB_DIR: Final = Path(__file__).resolve().parents[1] / "web" / "dist"
RESERVED_PREFIXES: Final = (
    "/v1/",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
    "/socket.io",
    "/.well-known/",
)
# Vite puts content-hashed files under assets/: they never change.
_IMMUTABLE = "public, max-age=31536000, immutable"
# The page itself is always revalidated, so a new build is picked up at once.
_REVALIDATE = "no-cache"
# The client loads only its own files and talks only to this origin; images are
# decrypted into blob: URLs.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
_SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


def _list_files(root: Path) -> dict[str, Path]:
    return {
        "/" + path.relative_to(root).as_posix(): path
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


class WebClient:
    """ASGI fallback: a built file, else ``index.html`` for client routes, else ``fallback``."""

    def __init__(self, root: Path, fallback: ASGIApp) -> None:
        self.files = _list_files(root)
        self.index = (root / "index.html").read_bytes()
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or path.startswith(RESERVED_PREFIXES)
        ):
            await self.fallback(scope, receive, send)
            return
        file = self.files.get(path)
        if file is not None and path != "/index.html":
            cache = _IMMUTABLE if path.startswith("/assets/") else _REVALIDATE
            response: Response = FileResponse(
                file,
                media_type=_MEDIA_TYPES.get(file.suffix, "application/octet-stream"),
                headers={"Cache-Control": cache, **_SECURITY_HEADERS},
            )
        elif "." in path.rsplit("/", 1)[-1]:
            # A missing file (an old hashed asset, a typo) is a 404, not the app's page.
            await self.fallback(scope, receive, send)
            return
        else:
            response = Response(
                self.index if scope["method"] == "GET" else b"",
                media_type="text/html; charset=utf-8",
                headers={
                    "Cache-Control": _REVALIDATE,
                    "Content-Security-Policy": _CSP,
                    "Content-Length": str(len(self.index)),
                    **_SECURITY_HEADERS,
                },
            )
        await response(scope, receive, send)


def install_web_client(api: FastAPI, directory: Path | None) -> bool:
    """Serve the built client from ``directory`` (default web/dist) when it exists.

    True when it is served; otherwise logs how to build it and leaves the API alone.
    """
    root = directory or DEFAULT_WEB_DIR
    if not (root / "index.html").is_file():
        log.warning(
            "web client not built (no %s): serving the API only; build it with `make web` "
            "(needs Node.js 20.19+ and npm)",
            root / "index.html",
        )
        return False
    api.router.default = WebClient(root, api.router.default)
    log.info("web client served at / from %s", root)
    return True

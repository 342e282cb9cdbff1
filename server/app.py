"""The application factory: FastAPI (on Starlette) for HTTP plus the Socket.IO hub.

``create_app(settings)`` builds one ASGI app; importing this module starts
nothing. The lifespan opens the database, then the key-value store, then the
socket hub, then background tasks, and closes them in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from config.errors import UnavailableError
from config.logging import configure_logging
from config.settings import Settings, load_settings, split_list
from server import collector
from server.auth.account_routes import router as account_router
from server.auth.cleanup import run_cleanup_loop
from server.auth.routes import router as auth_router
from server.chats.events import register_chat_events
from server.chats.request_routes import router as chat_requests_router
from server.chats.routes import router as chats_router
from server.collector import CollectorPauses
from server.contacts.routes import router as contacts_router
from server.container import Services, build_services
from server.devices.routes import router as devices_router
from server.drain import RefuseNewSockets, drain_on_sigterm, follow_supervisor
from server.errors import install_error_handlers
from server.media.routes import router as media_router
from server.middleware import RequestContextMiddleware
from server.openapi import install_openapi
from server.ops.routes import router as ops_router
from server.search.pruning import run_pruning_loop
from server.search.routes import router as search_router
from server.tips.routes import router as tips_router
from server.users.profile_routes import router as profile_router
from server.users.routes import router as users_router
from server.web import install_web_client
from storage import database

log = logging.getLogger("parley")

VERSION = "0.1.0"


def _lifespan(services: Services) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = services.settings
        async with AsyncExitStack() as stack:
            if settings.database.should_auto_migrate:
                await database.apply_migrations(settings.database)
            await database.open_database(settings.database)
            stack.push_async_callback(database.close_database)
            await services.kv.ping()
            stack.push_async_callback(services.kv.close)
            stack.push_async_callback(services.sms.close)
            stack.push_async_callback(services.mailer.close)
            stack.callback(services.media_pool.close)
            stack.callback(services.contacts.close)
            stack.push_async_callback(services.blobs.close)
            try:
                await services.blobs.ping()
            except UnavailableError as exc:
                # Chat works without media; /readyz reports it until fixed.
                log.error("media store unavailable: %s", exc.message)
            await services.hub.start()
            stack.push_async_callback(services.hub.close)
            tasks = BackgroundTasks()
            stack.push_async_callback(tasks.cancel_all)
            tasks.start(run_cleanup_loop(settings.auth, services.kv), "parley-cleanup")
            tasks.start(_reload_keys(services), "parley-key-reload")
            stack.push_async_callback(services.search_index.close)
            tasks.start(services.indexer.run(), "parley-indexer")
            tasks.start(run_pruning_loop(settings.search, services.indexer), "parley-prune-events")
            stack.push_async_callback(services.tips.close)
            tasks.start(services.tip_tracker.run(), "parley-tips")
            stack.enter_context(drain_on_sigterm(services))
            pauses = CollectorPauses(services.registry)
            pauses.start()
            stack.callback(pauses.stop)
            # Last: what startup allocated stays for the process's life.
            collector.tune(settings.server.gc_thresholds, settings.server.gc_freeze)
            _warn_about_defaults(settings)
            log.info(
                "parley ready",
                extra={
                    "database": "sqlite" if settings.database.is_sqlite else "postgresql",
                    "fanout": "redis" if settings.redis.url else "memory",
                },
            )
            yield
            services.draining = True
            log.info("parley shutting down")

    return lifespan


class BackgroundTasks:
    """Long-running tasks of the process, cancelled together at shutdown."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _reload_keys(services: Services) -> None:
    interval = services.settings.auth.key_reload_interval
    while True:
        await asyncio.sleep(interval)
        services.keyring.reload()


def _warn_about_defaults(settings: Settings) -> None:
    if settings.sms.provider == "console":
        log.warning("SMS provider is 'console': sign-in codes are written to this log")
    if settings.email.provider == "console":
        log.warning("e-mail provider is 'console': links are written to this log")
    if not settings.redis.url:
        log.info("no PARLEY_REDIS_URL: in-memory fan-out and kv, one node only")


def create_app(settings: Settings | None = None) -> Any:
    """Build the Parley ASGI app: HTTP API at /, Socket.IO at /socket.io/."""
    settings = settings or load_settings()
    services = build_services(settings)
    api = FastAPI(
        title="Parley",
        version=VERSION,
        description="Realtime, end-to-end-encrypted chat. Socket events: docs/PROTOCOL.md.",
        lifespan=_lifespan(services),
    )
    api.state.services = services
    install_error_handlers(api)
    for router in (
        ops_router,
        auth_router,
        account_router,
        search_router,  # before users: /v1/users/search is not a user id
        profile_router,
        users_router,
        chats_router,
        devices_router,
        media_router,
        contacts_router,
        chat_requests_router,
        tips_router,
    ):
        api.include_router(router)
    install_web_client(api, settings.server.web_dir)  # last: the fallback for unrouted GETs
    install_openapi(api)
    register_chat_events(services.hub, services.messages)
    if cors_origins := split_list(settings.server.cors_origins):
        api.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    http = RequestContextMiddleware(
        api,
        metrics=services.http_metrics,
        max_body_bytes=settings.server.max_body_bytes,
        streaming_prefixes=("/v1/media",),
    )
    app = RefuseNewSockets(services.hub.asgi_app(http), services)
    app.state = api.state  # let tests and tools reach the services
    return app


def create_app_from_env() -> Any:
    """uvicorn factory entry: settings and logging from the environment."""
    settings = load_settings()
    configure_logging(settings.log)
    follow_supervisor()
    return create_app(settings)

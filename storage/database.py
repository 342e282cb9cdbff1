"""Opening, migrating and checking the relational database (Tortoise ORM)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.exceptions import BaseORMException
from tortoise.migrations.api.migrate import migrate as tortoise_migrate
from tortoise.migrations.executor import MigrationExecutor

from config.errors import ConfigurationError, UnavailableError
from config.settings import DatabaseSettings
from storage import sql

log = logging.getLogger(__name__)

APP_LABEL = "parley"
MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"


def connection_url(settings: DatabaseSettings) -> str:
    """The Tortoise connection URL, with pool sizes for PostgreSQL."""
    url = settings.url
    if settings.is_sqlite:
        path = url.removeprefix("sqlite://")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Messages and phone numbers live in this file: owner-only, like the keys.
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        return url
    parts = urlsplit(url)
    scheme = "postgres" if parts.scheme in {"postgresql", "postgres"} else parts.scheme
    query = dict(parse_qsl(parts.query))
    query.setdefault("minsize", str(settings.pool_min_size))
    query.setdefault("maxsize", str(settings.pool_max_size))
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


async def _keep_session(connection: Any) -> None:
    """asyncpg's pool reset hook, run on every release.

    The default runs RESET ALL, UNLISTEN and friends: a round trip after every
    query Tortoise makes. Parley never changes session state on pooled
    connections, and asyncpg still rolls back a transaction left open, so
    skipping it is safe and saves a round trip per query.
    """


def _connection_config(settings: DatabaseSettings) -> str | dict[str, Any]:
    url = connection_url(settings)
    if settings.is_sqlite:
        return url
    config: dict[str, Any] = expand_db_url(url)
    config["credentials"]["reset"] = _keep_session
    return config


def tortoise_config(settings: DatabaseSettings) -> dict[str, Any]:
    return {
        "connections": {"default": _connection_config(settings)},
        "apps": {
            APP_LABEL: {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def __getattr__(name: str) -> Any:
    """``TORTOISE_CLI_CONFIG``, for the ``tortoise`` CLI (makemigrations) in development.

    Built when the CLI asks for it, not at import: building it creates the
    SQLite file of the environment's settings.
    """
    if name == "TORTOISE_CLI_CONFIG":
        return tortoise_config(DatabaseSettings())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def open_database(settings: DatabaseSettings) -> None:
    """Connect; refuse to serve on a schema older than the code."""
    try:
        # Requests run in other tasks than the lifespan that opened the
        # database, so the connections must be reachable from every task.
        await Tortoise.init(config=tortoise_config(settings), _enable_global_fallback=True)
        pending = await pending_migrations(settings)
    except (OSError, BaseORMException) as exc:
        raise ConfigurationError(f"PARLEY_DATABASE_URL: cannot open the database: {exc}") from exc
    if pending:
        await Tortoise.close_connections()
        raise ConfigurationError(
            f"the database schema is behind the code ({', '.join(pending)} not applied): "
            "run `parley migrate`"
        )


async def close_database() -> None:
    sql.forget_connection()
    await Tortoise.close_connections()
    # Tortoise caches prepared INSERT statements by connection *name*, not by
    # dialect; a later open of another backend under the same name (the test
    # suite runs SQLite then PostgreSQL in one process) must not reuse them.
    EXECUTOR_CACHE.clear()


async def pending_migrations(settings: DatabaseSettings) -> list[str]:
    executor = MigrationExecutor(connections.get("default"), tortoise_config(settings)["apps"])
    plan = await executor.plan(None)
    return [
        f"{step.migration.app_label}.{step.migration.name}" for step in plan if not step.backward
    ]


async def apply_migrations(settings: DatabaseSettings) -> None:
    """Bring the schema up to date (``parley migrate``); safe to run repeatedly."""
    try:
        await tortoise_migrate(config=tortoise_config(settings))
    finally:
        await close_database()


async def ping() -> None:
    """Raise ``UnavailableError`` unless the database answers a trivial query."""
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:
        raise UnavailableError(f"database unreachable: {type(exc).__name__}") from exc

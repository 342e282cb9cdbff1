"""The ``parley`` command: serve, migrate, reindex, prune-events, keys."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import timedelta

from config.errors import ConfigurationError
from config.logging import configure_logging
from config.settings import Settings, load_settings


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from storage import database

    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    workers = args.workers or settings.server.workers
    if workers > 1 and not settings.redis.url:
        raise ConfigurationError(
            "PARLEY_SERVER_WORKERS: several workers need PARLEY_REDIS_URL "
            "(sockets on one worker must reach users on another)"
        )
    if workers > 1 and settings.database.should_auto_migrate:
        # Migrate once here rather than racing in every worker's start-up.
        asyncio.run(database.apply_migrations(settings.database))
    uvicorn.run(
        "server.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=settings.server.ws_compression,
        # Engine.IO pings every socket already (PARLEY_REALTIME_PING_INTERVAL)
        # and drops one that does not answer; uvicorn's own websocket pings
        # would double the keepalive work of every connection for nothing.
        ws_ping_interval=None,
        lifespan="on",
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.server.forwarded_allow_ips,
        timeout_graceful_shutdown=settings.server.drain_grace_seconds,
    )
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage import database

    asyncio.run(database.apply_migrations(settings.database))
    print("database schema is up to date")
    return 0


def _reindex(settings: Settings, args: argparse.Namespace) -> int:
    from config.keys import load_server_keys
    from server.contacts.service import ContactService
    from server.search.indexer import Indexer
    from storage import database
    from storage.kv import MemoryKeyValueStore
    from storage.search import build_search_index

    class _Nobody:
        async def emit_to_users(self, event: str, data: object, user_ids: list[str]) -> None:
            return None  # a rebuild tells nobody anything

    async def run() -> int:
        await database.open_database(settings.database)
        index = build_search_index(settings.database.is_sqlite, settings.opensearch.url)
        try:
            contacts = ContactService(load_server_keys(settings.auth).server_secret, _Nobody())
            return await Indexer(index, contacts, MemoryKeyValueStore()).reindex()
        finally:
            await index.close()
            await database.close_database()

    position = asyncio.run(run())
    print(f"search index rebuilt from the database; the indexer continues after event {position}")
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# PARLEY_SEARCH_EVENT_RETENTION's floor: a reindex (minutes) must never see
# events written while it ran pruned before it sets the position.
MIN_EVENT_AGE = timedelta(hours=1)


def duration(value: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"90m"``, ``"3600s"`` or ``"3600"`` (seconds)."""
    match = re.fullmatch(r"(\d{1,9})([smhd]?)", value.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r} (say 7d, 12h, 90m or 3600)")
    amount = timedelta(seconds=int(match[1]) * _UNITS[match[2] or "s"])
    if amount < MIN_EVENT_AGE:
        raise argparse.ArgumentTypeError(f"at least an hour: {value!r}")
    return amount


def _prune_events(settings: Settings, args: argparse.Namespace) -> int:
    from server.search.pruning import prune_events
    from storage import database

    older_than: timedelta = args.older_than or timedelta(seconds=settings.search.event_retention)

    async def run() -> int:
        await database.open_database(settings.database)
        try:
            return await prune_events(older_than)
        finally:
            await database.close_database()

    deleted = asyncio.run(run())
    print(f"deleted {deleted} events the indexer had applied, older than {older_than}")
    return 0


def _rotate_keys(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.keyring import rotate_key

    kid = rotate_key(settings.auth)
    print(f"new access-token signing key: {kid}")
    print(
        f"nodes sign with it within {settings.auth.key_reload_interval:g} s and accept the "
        "old key until its tokens expire",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley",
        description="Parley: realtime, end-to-end-encrypted chat server. "
        "Configuration comes from PARLEY_* environment variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server (HTTP API + Socket.IO)")
    serve.add_argument("--host", help="address to bind (default PARLEY_SERVER_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default PARLEY_SERVER_PORT, 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes (default 1; more than 1 needs PARLEY_REDIS_URL)",
    )
    serve.set_defaults(handler=_serve)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)
    reindex = commands.add_parser(
        "reindex", help="rebuild the search index and phone directory from the database"
    )
    reindex.set_defaults(handler=_reindex)
    prune = commands.add_parser(
        "prune-events",
        help="delete events (the search outbox) the indexer has applied, past the retention",
    )
    prune.add_argument(
        "--older-than",
        type=duration,
        metavar="AGE",
        help="keep events younger than this: 7d, 12h, 90m or seconds "
        "(default PARLEY_SEARCH_EVENT_RETENTION, 7 days; at least 1h)",
    )
    prune.set_defaults(handler=_prune_events)
    keys = commands.add_parser("keys", help="manage server keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate = key_commands.add_parser(
        "rotate", help="retire the access-token signing key and make a new one"
    )
    rotate.set_defaults(handler=_rotate_keys)
    # Its own parser (client.loadtest.cli) reads the rest; see main().
    commands.add_parser(
        "loadtest",
        help="drive N sessions against a Parley URL and report (parley loadtest --help)",
        add_help=False,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["loadtest"]:
        # A client of any server: no server settings, no server imports.
        from client.loadtest.cli import main as loadtest

        return loadtest(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log)
        code: int = args.handler(settings, args)
        return code
    except ConfigurationError as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

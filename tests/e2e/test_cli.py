"""The `parley` command: settings errors, migrations, pruning events, several workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import asyncpg

from tests.support.clients import signed_in_client
from tests.support.server import ROOT, ServerProcess
from tests.support.services import (
    REDIS_E2E_DB,
    create_postgres_database,
    drop_postgres_database,
    redis_url,
)


def _parley(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    """A bad value or an unknown PARLEY_ variable exits 2 with a message naming it."""
    for env, name in (
        ({"PARLEY_DATABASE_POOL_MAX_SIZE": "lots"}, "PARLEY_DATABASE_POOL_MAX_SIZE"),
        ({"PARLEY_REDIS_URL": "http://nope"}, "PARLEY_REDIS_URL"),
        ({"PARLEY_DATABSE_URL": "sqlite://x"}, "PARLEY_DATABSE_URL"),
        ({"PARLEY_AUTH_OTP_TTL": "3600"}, "PARLEY_AUTH_OTP_TTL"),
    ):
        result = _parley(["serve"], {**env, "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys")})
        assert result.returncode == 2, result.stderr
        assert name in result.stderr and "Traceback" not in result.stderr


def test_several_workers_need_redis(tmp_path: Path) -> None:
    """`serve --workers 2` without PARLEY_REDIS_URL is refused with the reason."""
    result = _parley(
        ["serve", "--workers", "2"], {"PARLEY_DATABASE_URL": f"sqlite://{tmp_path}/p.sqlite3"}
    )
    assert result.returncode == 2 and "PARLEY_REDIS_URL" in result.stderr


async def test_migrate_creates_the_schema_on_postgres() -> None:
    """`parley migrate` creates every table on an empty PostgreSQL database and is idempotent."""
    url = await create_postgres_database("parley_migrate")
    try:
        for _ in range(2):
            result = _parley(["migrate"], {"PARLEY_DATABASE_URL": url})
            assert result.returncode == 0, result.stderr
        conn = await asyncpg.connect(url)
        try:
            tables = {
                r["tablename"]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                )
            }
            # Envelopes are compressed with LZ4 where the server offers it (0008).
            lz4 = await conn.fetchval(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
            body = await conn.fetchval(
                "SELECT attcompression::text FROM pg_attribute"
                " WHERE attrelid = 'messages'::regclass AND attname = 'body'"
            )
        finally:
            await conn.close()
        assert {
            "users",
            "identities",
            "sessions",
            "spent_refresh_tokens",
            "conversations",
            "conversation_members",
            "messages",
        } <= tables
        assert body == ("l" if lz4 else "")
    finally:
        await drop_postgres_database(url)


async def test_server_refuses_a_schema_behind_the_code() -> None:
    """A node on an unmigrated PostgreSQL database refuses to start and says `parley migrate`."""
    url = await create_postgres_database("parley_unmigrated")
    try:
        node = ServerProcess({"PARLEY_DATABASE_URL": url}, name="unmigrated")
        try:
            node.start(timeout=20)
            raise AssertionError("node started on an unmigrated database")
        except RuntimeError as exc:
            assert "parley migrate" in str(exc)
        finally:
            node.stop()
    finally:
        await drop_postgres_database(url)


async def test_prune_events_deletes_old_events_the_indexer_applied() -> None:
    """`parley prune-events --older-than 2d` deletes applied events past two days, says how
    many, keeps the rest; an age under an hour is refused."""
    url = await create_postgres_database("parley_prune")
    try:
        assert _parley(["migrate"], {"PARLEY_DATABASE_URL": url}).returncode == 0
        conn = await asyncpg.connect(url)
        try:
            ids = [
                await conn.fetchval(
                    "INSERT INTO events (kind, payload, created_at)"
                    " VALUES ('person', '{}', now() - $1::interval) RETURNING id",
                    timedelta(days=days),
                )
                for days in (3, 3, 1, 3, 3, 3)
            ]
            # The indexer has applied the first five.
            await conn.execute(
                "INSERT INTO indexer_state (name, position, updated_at)"
                " VALUES ('search', $1, now())",
                ids[4],
            )
            result = _parley(["prune-events", "--older-than", "2d"], {"PARLEY_DATABASE_URL": url})
            assert result.returncode == 0, result.stderr
            assert "deleted 4 events" in result.stdout
            left = [r["id"] for r in await conn.fetch("SELECT id FROM events ORDER BY id")]
            assert left == [ids[2], ids[5]]
        finally:
            await conn.close()
        refused = _parley(["prune-events", "--older-than", "10m"], {"PARLEY_DATABASE_URL": url})
        assert refused.returncode == 2 and "at least an hour" in refused.stderr
    finally:
        await drop_postgres_database(url)


def two_workers_env(cluster_env: dict[str, str], url: str, root: Path) -> dict[str, str]:
    """`parley serve --workers 2` on the database ``url`` and the e2e Redis."""
    return {
        **cluster_env,
        "PARLEY_DATABASE_URL": url,
        "PARLEY_REDIS_URL": redis_url(REDIS_E2E_DB),
        "PARLEY_SERVER_WORKERS": "2",
        "PARLEY_AUTH_KEYS_DIR": str(root / "keys"),
    }


async def test_two_workers_share_redis(tmp_path: Path, cluster_env: dict[str, str]) -> None:
    """`parley serve --workers 2` on PostgreSQL + Redis serves sign-in and messaging."""
    url = await create_postgres_database("parley_workers")
    env = two_workers_env(cluster_env, url, tmp_path)
    node = ServerProcess(env, name="two-workers").start()
    try:
        clients = [await signed_in_client(node, f"w{i}") for i in range(4)]
        try:
            conversation = await clients[0].open_direct(clients[1].user_id or "", mode="plaintext")
            ack = await clients[0].send_text(conversation["id"], "through a worker")
            assert (await clients[1].next_message())["id"] == ack["id"]
        finally:
            for c in clients:
                await c.close()
    finally:
        node.stop()
        await drop_postgres_database(url)


def _workers_of(pid: int) -> list[int]:
    """The uvicorn worker processes started by the supervisor ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; nobody may be reaping it


def _all_exited(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(map(_running, pids)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


async def test_workers_drain_and_exit_when_their_supervisor_is_killed(
    tmp_path: Path, cluster_env: dict[str, str]
) -> None:
    """SIGKILL of `parley serve --workers 2`'s supervisor: its workers do not serve on alone."""
    url = await create_postgres_database("parley_orphans")
    env = two_workers_env(cluster_env, url, tmp_path)
    node = ServerProcess(env, name="orphans").start()
    try:
        assert node.proc is not None
        workers = _workers_of(node.proc.pid)
        assert len(workers) == 2
        node.proc.send_signal(signal.SIGKILL)  # the supervisor alone, not its group
        await asyncio.to_thread(node.proc.wait, 5)
        assert await asyncio.to_thread(_all_exited, workers, 20), "a worker outlived its supervisor"
        await asyncio.to_thread(
            node.wait_for_record, lambda r: r.get("message") == "SIGTERM: draining"
        )
    finally:
        node.stop()
        await drop_postgres_database(url)

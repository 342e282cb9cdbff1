"""The indexer catches up after being stopped, and `parley reindex` rebuilds the same index.

Each backend gets a node of its own (a SQLite file, or a fresh PostgreSQL
database), so stopping and restarting it disturbs no other test and search
results can be compared exactly. Both use Redis for the key-value store: the
indexer runs only on the node holding its lease there, so a lease held by
someone else (a node that died holding it keeps it until it expires) stops
indexing while the API goes on taking writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import string
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from client import ParleyClient
from tests.e2e.conftest import BASE_ENV
from tests.support.clients import signed_in_client
from tests.support.phones import fresh_phone
from tests.support.server import ROOT, ServerProcess
from tests.support.services import (
    REDIS_E2E_DB,
    create_postgres_database,
    drop_postgres_database,
    redis_url,
)

T = TypeVar("T")

PATIENCE = 10.0
LEASE = "lease:indexer:search"  # server/search/indexer.py, under the deployment's key prefix
LEASE_TTL = 10.0  # Indexer(lease_ttl=...)


@dataclass
class Backend:
    name: str
    env: dict[str, str]
    sqlite_path: Path | None = None

    @property
    def key_prefix(self) -> str:
        return self.env["PARLEY_REDIS_KEY_PREFIX"]


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A node's settings on an empty database of its own, with Redis for the lease."""
    run = uuid.uuid4().hex[:8]
    env = {
        **BASE_ENV,
        "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys"),
        "PARLEY_MEDIA_DIR": str(tmp_path / "media"),
        "PARLEY_REDIS_URL": redis_url(REDIS_E2E_DB),
        "PARLEY_REDIS_CHANNEL": f"parley-reindex-{run}",
        "PARLEY_REDIS_KEY_PREFIX": f"parley-reindex-{run}:",
    }
    database = None
    if request.param == "sqlite":
        path = tmp_path / "parley.sqlite3"
        yield Backend("sqlite", {**env, "PARLEY_DATABASE_URL": f"sqlite://{path}"}, path)
    else:
        database = await create_postgres_database("parley_reindex")
        env.update(PARLEY_DATABASE_URL=database, PARLEY_DATABASE_AUTO_MIGRATE="true")
        yield Backend("postgres", env)
    client = redis_asyncio.Redis.from_url(redis_url(REDIS_E2E_DB))
    try:
        keys = [k async for k in client.scan_iter(match=f"{env['PARLEY_REDIS_KEY_PREFIX']}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    if database is not None:
        await drop_postgres_database(database)


# -- helpers ---------------------------------------------------------------------------


def uid(client: ParleyClient) -> str:
    assert client.user_id is not None
    return client.user_id


def word(length: int = 9) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=length))


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    deadline = time.monotonic() + PATIENCE
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {PATIENCE} s: {what}; last: {value!r}")
        await asyncio.sleep(0.1)


async def messages_found(client: ParleyClient, q: str, **kw: Any) -> list[str]:
    return [m["id"] for m in (await client.search_messages(q, limit=100, **kw))["messages"]]


async def people_found(
    client: ParleyClient, q: str = "", interests: list[str] | None = None
) -> list[str]:
    return [p["user_id"] for p in (await client.search_people(q, interests, limit=100))["people"]]


@contextlib.asynccontextmanager
async def lease_held_elsewhere(backend: Backend) -> AsyncIterator[None]:
    """Another "node" holds the indexer's lease for the duration: this node stops indexing."""
    client = redis_asyncio.Redis.from_url(redis_url(REDIS_E2E_DB))
    key = backend.key_prefix + LEASE
    elsewhere = b"a-node-that-died"
    try:
        # The indexer renews with a read then a write; one that read its own id
        # just before we wrote can write it back once. Hold until it stays ours.
        while True:
            await client.set(key, elsewhere, ex=60)
            await asyncio.sleep(1.0)
            if await client.get(key) == elsewhere:
                break
        yield
    finally:
        await client.delete(key)
        await client.aclose()


async def wipe_index(backend: Backend) -> None:
    """Lose the search index and the phone directory, as a restored backup might."""
    if backend.sqlite_path is not None:
        with contextlib.closing(sqlite3.connect(backend.sqlite_path)) as db, db:
            for table in (
                "search_people_fts",
                "search_person_interests",
                "search_people",
                "search_messages_fts",
                "search_messages",
                "phone_directory",
            ):
                db.execute(f"DELETE FROM {table}")
        return
    conn = await asyncpg.connect(backend.env["PARLEY_DATABASE_URL"])
    try:
        await conn.execute("TRUNCATE search_people, search_messages, phone_directory")
    finally:
        await conn.close()


async def last_analyzed(backend: Backend) -> float | None:
    """When PostgreSQL last analyzed search_people by hand (epoch seconds), if ever."""
    if backend.sqlite_path is not None:
        return None
    conn = await asyncpg.connect(backend.env["PARLEY_DATABASE_URL"])
    try:
        value: float | None = await conn.fetchval(
            "SELECT extract(epoch FROM last_analyze)::float8 FROM pg_stat_user_tables"
            " WHERE relname = 'search_people'"
        )
        return value
    finally:
        await conn.close()


async def reindex(backend: Backend) -> str:
    """`parley reindex` against the (stopped) node's database; its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(backend.env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "reindex",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


# -- the world the test searches ----------------------------------------------------------


@dataclass
class World:
    surname: str
    searcher: ParleyClient
    people: list[ParleyClient]  # p1..p4
    owner: ParleyClient  # an address book holding p1 and a number nobody has yet
    group: dict[str, Any]
    direct: dict[str, Any]
    newcomer_phone: str


async def build_world(node: ServerProcess, clients: list[ParleyClient]) -> World:
    surname = word()
    phones = [fresh_phone() for _ in range(6)]
    signed = await asyncio.gather(
        *(
            signed_in_client(node, name, phone=phone)
            for name, phone in zip(
                ["searcher", "p1", "p2", "p3", "p4", "owner"], phones, strict=True
            )
        )
    )
    clients.extend(signed)
    searcher, p1, p2, p3, p4, owner = signed
    profiles = [
        (searcher, "Sam", surname, ["jazz"], "everyone"),
        (p1, "Ann", surname, ["jazz", "hiking", "books"], "everyone"),
        (
            p2,
            "Bea",
            surname[:-1] + ("y" if surname.endswith("x") else "x"),
            ["jazz", "hiking"],
            "everyone",
        ),
        (p3, "Cy", surname, ["hiking"], "contacts"),
        (p4, "Di", surname, ["jazz", "books"], "nobody"),
    ]
    for client, first, last, interests, visibility in profiles:
        change = await client.update_profile(
            first_name=first, last_name=last, interests=interests, visibility=visibility
        )
        await client.wait_indexed(change["event_id"], timeout=PATIENCE)
    await p3.upload_contacts([phones[0]])  # p3 shows to the searcher only
    newcomer_phone = fresh_phone()
    await owner.upload_contacts([phones[1], newcomer_phone])

    group = await searcher.create_group("zeppelins", [uid(p1), uid(p2)], mode="plaintext")
    direct = await searcher.open_direct(uid(p1), mode="plaintext")
    await searcher.send_text(group["id"], "the quarterly budget spreadsheet is late")
    edited = await p1.send_text(group["id"], "alpha pineapple tonight")
    await p1.edit_text(group["id"], edited["id"], "alpha mango tonight")
    deleted = await p2.send_text(group["id"], "budget leak, delete me")
    await p2.delete_message(group["id"], deleted["id"])
    await p1.send_text(direct["id"], "budget for the zeppelin trip")
    last = await searcher.send_text(direct["id"], "zeppelin tickets booked")
    await eventually(
        lambda: messages_found(searcher, "zeppelin"),
        lambda ids: last["id"] in ids,
        "the last message indexed",
    )
    return World(surname, searcher, [p1, p2, p3, p4], owner, group, direct, newcomer_phone)


async def snapshot(world: World) -> dict[str, Any]:
    """Everything search and matching show in this world, in order."""
    s, (p1, p2, _, _) = world.searcher, world.people

    async def people(client: ParleyClient, q: str, interests: list[str] | None = None) -> Any:
        page = await client.search_people(q, interests, limit=100)
        return [(p["user_id"], p["shared_interests"], p["first_name"]) for p in page["people"]]

    async def messages(client: ParleyClient, q: str, **kw: Any) -> Any:
        page = await client.search_messages(q, limit=100, **kw)
        return [(m["id"], m["body"]["text"]) for m in page["messages"]]

    return {
        "by name": await people(s, world.surname),
        "by typo": await people(s, world.surname[:3] + world.surname[4:]),
        "by name and interests": await people(s, world.surname, ["jazz", "hiking", "books"]),
        "by interests": await people(s, "", ["hiking", "books"]),
        "p2 by name": await people(p2, world.surname),
        "budget": await messages(s, "budgte"),
        "mango": await messages(p2, "mango"),
        "pineapple": await messages(p2, "pineapple"),
        "zeppelin": await messages(p1, "zeppelin"),
        "zeppelin in the group": await messages(p1, "zeppelin", conversation_id=world.group["id"]),
        "deleted": await messages(s, "leak"),
        "contacts": sorted(
            (c["contact"]["user_id"], c["mutual"]) for c in await world.owner.contacts()
        ),
    }


# -- the test --------------------------------------------------------------------------------


async def test_indexer_catches_up_after_a_restart_and_reindex_rebuilds_the_same_index(
    backend: Backend,
) -> None:
    """Writes made while the indexer was stopped are found after a restart; a wiped index
    rebuilt by `parley reindex` answers every search exactly as before."""
    node = ServerProcess(backend.env, name=f"reindex-{backend.name}").start()
    clients: list[ParleyClient] = []
    try:
        world = await build_world(node, clients)
        s, (p1, p2, p3, p4) = world.searcher, world.people
        before = await snapshot(world)
        # Ranked by interests shared with the searcher's profile (jazz) first: p1 (exact
        # surname) then p2 (near miss), then p3 (exact, no jazz); never p4 (nobody).
        by_name = [(u, shared) for u, shared, _ in before["by name"]]
        assert by_name == [(uid(p1), 1), (uid(p2), 1), (uid(p3), 0)]
        assert [t for _, t in before["mango"]] == ["alpha mango tonight"]
        assert before["pineapple"] == [] and before["deleted"] == []
        assert before["contacts"] == [(uid(p1), False)]

        async with lease_held_elsewhere(backend):
            renamed = await p1.update_profile(first_name="Quentin")
            hidden = await p2.update_profile(visibility="nobody")
            late = await p2.send_text(world.group["id"], "zeppelin crash landing rumours")
            newcomer = await signed_in_client(
                node, "newcomer", phone=world.newcomer_phone, connect=False
            )
            clients.append(newcomer)
            await asyncio.sleep(1.0)
            status = await s.event_status(renamed["event_id"])
            assert status["indexed"] is False and status["position"] < renamed["event_id"]
            assert uid(p1) not in await people_found(s, "Quentin")
            assert uid(p2) in await people_found(s, world.surname)
            assert late["id"] not in await messages_found(p1, "crash")
            assert uid(newcomer) not in {
                c["contact"]["user_id"] for c in await world.owner.contacts()
            }
            node.stop()

        node.start()
        await s.wait_indexed(hidden["event_id"], timeout=PATIENCE)
        assert (await s.event_status(renamed["event_id"]))["indexed"] is True
        assert uid(p1) in await people_found(s, "Quentin")
        assert uid(p2) not in await people_found(s, world.surname)
        assert await messages_found(p1, "crash") == [late["id"]]
        await eventually(
            world.owner.contacts,
            lambda cs: uid(newcomer) in {c["contact"]["user_id"] for c in cs},
            "the newcomer matched",
        )
        caught_up = await snapshot(world)
        assert caught_up != before

        # Lose the index, rebuild it from the database with the node stopped.
        node.stop()
        await wipe_index(backend)
        analyzed = await last_analyzed(backend)
        output = await reindex(backend)
        assert "search index rebuilt" in output
        if backend.sqlite_path is None:  # fresh statistics for the name-word walk
            assert (await last_analyzed(backend) or 0) > (analyzed or 0)
        node.start()
        assert await snapshot(world) == caught_up

        # The indexer goes on from where the rebuild left it. The stopped process
        # did not give its lease back, so this one may wait for it to expire.
        again = await p3.update_profile(first_name="Xavier")
        await p3.wait_indexed(again["event_id"], timeout=LEASE_TTL + PATIENCE)
        assert uid(p3) in await people_found(s, f"Xavier {world.surname}")
        # The rebuilt phone directory matches a new address book.
        fresh = await p4.upload_contacts([world.newcomer_phone])
        assert [m["contact"]["user_id"] for m in fresh["matches"]] == [uid(newcomer)]
    finally:
        for client in clients:
            await client.close()
        node.stop()

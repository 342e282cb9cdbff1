"""The in-memory device sets behind the envelope check (server/chats/envelopes.py).

The database read is replaced by a function that records its calls; the real
read runs in tests/e2e/test_e2ee.py on SQLite and on PostgreSQL across nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from server.chats import envelopes
from server.chats.envelopes import DEVICES_CHANGED, MemberDevices


class FakeDevices:
    """Rows of a devices table; every read is counted and may be held open."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.reads = 0
        self.hold: asyncio.Event | None = None

    def add(self, device_id: str, user_id: str) -> None:
        self.rows.append({"id": device_id, "user_id": user_id, "signing_key": f"key-{device_id}"})

    async def fetch(self, sql: str, params: Sequence[Any], **_: Any) -> list[dict[str, Any]]:
        self.reads += 1
        snapshot = [r for r in self.rows if r["user_id"] in params]
        if self.hold is not None:
            await self.hold.wait()
        return snapshot


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> FakeDevices:
    fake = FakeDevices()
    monkeypatch.setattr(envelopes.sql, "fetch", fake.fetch)
    monkeypatch.setattr(envelopes.sql, "is_postgres", lambda: False)  # the IN (?, ...) form
    return fake


async def test_a_set_is_read_once_and_reused(table: FakeDevices) -> None:
    table.add("d1", "alice")
    table.add("d2", "bob")
    cache = MemberDevices()
    first = await cache.of("c1", {"alice": "owner", "bob": "member"}.keys())
    assert first == {"d1": ("alice", "key-d1"), "d2": ("bob", "key-d2")}
    assert await cache.of("c1", ["bob", "alice"]) == first
    assert table.reads == 1


async def test_another_member_set_is_read_again(table: FakeDevices) -> None:
    table.add("d1", "alice")
    table.add("d3", "carol")
    cache = MemberDevices()
    assert set(await cache.of("c1", ["alice"])) == {"d1"}
    assert set(await cache.of("c1", ["alice", "carol"])) == {"d1", "d3"}, "carol joined"
    assert table.reads == 2


async def test_a_device_change_drops_the_sets_of_its_user_only(table: FakeDevices) -> None:
    table.add("d1", "alice")
    table.add("d2", "bob")
    published: list[dict[str, Any]] = []

    async def publish(message: dict[str, Any]) -> None:
        published.append(message)

    cache = MemberDevices(publish=publish)
    await cache.of("with-bob", ["alice", "bob"])
    await cache.of("without-bob", ["alice"])
    table.add("d4", "bob")
    await cache.changed("bob")
    assert published == [{"type": DEVICES_CHANGED, "user_id": "bob"}]
    assert set(await cache.of("with-bob", ["alice", "bob"])) == {"d1", "d2", "d4"}
    await cache.of("without-bob", ["alice"])
    assert table.reads == 3, "the set without bob stayed"


async def test_a_notice_from_another_node_drops_the_sets(table: FakeDevices) -> None:
    table.add("d1", "alice")
    cache = MemberDevices()
    await cache.of("c1", ["alice"])
    table.rows.clear()  # alice's only device revoked elsewhere
    await cache.on_notice({"type": DEVICES_CHANGED, "user_id": "alice"})
    assert await cache.of("c1", ["alice"]) == {}


async def test_a_read_that_crosses_a_change_is_not_kept(table: FakeDevices) -> None:
    table.add("d1", "alice")
    cache = MemberDevices()
    table.hold = asyncio.Event()
    reading = asyncio.create_task(cache.of("c1", ["alice"]))
    await asyncio.sleep(0)  # the read has its rows: d1 still active
    table.rows.clear()
    cache.forget_user("alice")  # the revocation lands while the read is out
    table.hold.set()
    assert set(await reading) == {"d1"}, "the caller that asked before gets what it read"
    table.hold = None
    assert await cache.of("c1", ["alice"]) == {}, "but it was not kept for later sends"


async def test_sets_expire(table: FakeDevices) -> None:
    table.add("d1", "alice")
    cache = MemberDevices(ttl=0.05)
    await cache.of("c1", ["alice"])
    await asyncio.sleep(0.06)
    await cache.of("c1", ["alice"])
    assert table.reads == 2


async def test_the_cache_is_bounded(table: FakeDevices) -> None:
    table.add("d1", "alice")
    cache = MemberDevices(size=3)
    for n in range(10):
        await cache.of(f"c{n}", ["alice"])
    assert len(cache._entries) <= 3


async def test_no_members_no_read(table: FakeDevices) -> None:
    assert await MemberDevices().of("c1", []) == {}
    assert table.reads == 0


async def test_clear_drops_every_set(table: FakeDevices) -> None:
    """What a node does when its control subscription is back: nothing cached survives."""
    table.add("d1", "alice")
    cache = MemberDevices()
    await cache.of("c1", ["alice"])
    await cache.of("c2", ["alice"])
    cache.clear()
    await cache.of("c1", ["alice"])
    await cache.of("c2", ["alice"])
    assert table.reads == 4


async def test_nothing_is_kept_while_control_messages_may_be_missed(table: FakeDevices) -> None:
    """Between ``control_lost`` and ``control_resumed`` every check reads the database."""
    table.add("d1", "alice")
    cache = MemberDevices()
    await cache.of("c1", ["alice"])
    cache.distrust()
    await cache.of("c1", ["alice"])
    await cache.of("c1", ["alice"])
    assert table.reads == 3
    cache.clear()
    await cache.of("c1", ["alice"])
    await cache.of("c1", ["alice"])
    assert table.reads == 4, "kept again once the subscription is back"


async def test_one_conversation_can_be_read_again(table: FakeDevices) -> None:
    table.add("d1", "alice")
    cache = MemberDevices()
    await cache.of("c1", ["alice"])
    await cache.of("c2", ["alice"])
    cache.forget_conversation("c1")
    await cache.of("c1", ["alice"])
    await cache.of("c2", ["alice"])
    assert table.reads == 3

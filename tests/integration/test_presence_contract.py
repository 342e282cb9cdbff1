"""The presence contract, run against the in-memory store and Redis alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from realtime.presence import MemoryPresenceStore, PresenceStore, RedisPresenceStore
from tests.support.services import REDIS_INTEGRATION_DB, flush_redis, redis_url


@pytest.fixture(params=["memory", "redis"])
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[PresenceStore]:
    """A presence store: the in-process default or Redis (its test db flushed first)."""
    store: PresenceStore
    if request.param == "memory":
        store = MemoryPresenceStore()
    else:
        await flush_redis(REDIS_INTEGRATION_DB)
        store = RedisPresenceStore.from_url(redis_url(REDIS_INTEGRATION_DB), prefix="test:")
    try:
        yield store
    finally:
        await store.close()


async def test_online_while_any_node_holds_the_user(presence: PresenceStore) -> None:
    """A user on two nodes stays online when one leaves and goes offline when both have."""
    uid = str(uuid.uuid4())
    assert await presence.heartbeat("n1", [uid], ttl=10) == [uid], "came online"
    assert await presence.heartbeat("n2", [uid], ttl=10) == [], "already online"
    assert not await presence.leave("n1", uid)
    [state] = await presence.states([uid])
    assert state.online and state.last_seen is None
    assert await presence.leave("n2", uid)
    [state] = await presence.states([uid])
    assert not state.online and state.last_seen is not None


async def test_a_dead_nodes_users_expire(presence: PresenceStore) -> None:
    """Entries a node stops refreshing expire and are reported once as offline."""
    alive, dead = str(uuid.uuid4()), str(uuid.uuid4())
    await presence.heartbeat("n1", [alive], ttl=10)
    await presence.heartbeat("n2", [dead], ttl=0.2)
    await asyncio.sleep(0.3)
    assert await presence.expired() == [dead]
    assert await presence.expired() == []
    states = {s.user_id: s for s in await presence.states([alive, dead])}
    assert states[alive].online and not states[dead].online
    assert states[dead].last_seen is not None


async def test_never_seen_users_are_offline_without_last_seen(presence: PresenceStore) -> None:
    """A user nobody has seen is offline with no last_seen."""
    [state] = await presence.states([str(uuid.uuid4())])
    assert not state.online and state.last_seen is None


async def test_a_heartbeat_for_thousands_reports_exactly_who_came_online(
    presence: PresenceStore,
) -> None:
    """A node's heartbeat for more users than one Redis call carries: every entry
    refreshed, and exactly the users who were offline reported, in order."""
    users = [str(uuid.uuid4()) for _ in range(1_203)]
    already = users[1::3]
    assert await presence.heartbeat("n2", already, ttl=10) == already
    came = await presence.heartbeat("n1", users, ttl=0.3)
    assert came == [uid for i, uid in enumerate(users) if i % 3 != 1]
    assert await presence.heartbeat("n1", users, ttl=0.3) == []
    assert all(s.online for s in await presence.states(users))
    # n1's entries expire; users n2 still holds stay online.
    await asyncio.sleep(0.4)
    assert sorted(await presence.expired()) == sorted(set(users) - set(already))
    states = {s.user_id: s.online for s in await presence.states(users)}
    assert [uid for uid in users if states[uid]] == already

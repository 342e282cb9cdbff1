"""The Redis control bus: messages between nodes, and what a node does when it lost them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as redis_asyncio

from realtime.control import CONTROL_LOST, CONTROL_RESUMED, RedisControlBus
from tests.support.services import REDIS_INTEGRATION_DB, redis_url


async def _next(inbox: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(inbox.get(), 10)


async def test_a_lost_subscription_comes_back_and_says_so() -> None:
    """Messages reach every subscribed node; a node whose subscription was cut is told
    so (``control_lost``, to itself only) and again once Redis has confirmed the new
    subscription (``control_resumed``), and hears messages again."""
    channel = f"parley-test-{uuid.uuid4().hex[:8]}"
    url = redis_url(REDIS_INTEGRATION_DB)
    first, second = RedisControlBus(url, channel), RedisControlBus(url, channel)
    inbox_1: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox_2: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    admin = redis_asyncio.Redis.from_url(url, decode_responses=True)
    name = f"parley-test-bus-{uuid.uuid4().hex[:8]}"
    for bus in (first, second):  # named, so only these connections are cut below
        bus._redis.connection_pool.connection_kwargs["client_name"] = name
    try:
        await first.start(inbox_1.put)
        await second.start(inbox_2.put)
        await first.publish({"type": "hello", "n": 1})
        assert await _next(inbox_1) == {"type": "hello", "n": 1}
        assert await _next(inbox_2) == {"type": "hello", "n": 1}

        # Cut both subscriptions, as a Redis restart or a network blip would.
        ours = [c for c in await admin.client_list() if c["name"] == name and c["sub"] != "0"]
        assert len(ours) == 2
        for client in ours:
            await admin.execute_command("CLIENT", "KILL", "ID", client["id"])
        for inbox in (inbox_1, inbox_2):
            assert await _next(inbox) == {"type": CONTROL_LOST}, "told at once"
            assert await _next(inbox) == {"type": CONTROL_RESUMED}, "then told it is back"

        await second.publish({"type": "hello", "n": 2})
        assert await _next(inbox_1) == {"type": "hello", "n": 2}
        assert await _next(inbox_2) == {"type": "hello", "n": 2}
        assert inbox_1.empty() and inbox_2.empty()
    finally:
        await first.close()
        await second.close()
        await admin.aclose()

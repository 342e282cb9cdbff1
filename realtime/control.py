"""Node-to-node control messages (for example "session revoked: drop its sockets").

Socket.IO's Redis manager only carries emits to clients; actions every node
must take on its own sockets travel here. One protocol, two backends, like the
kv store: in-process for one node, Redis pub/sub for many. Delivery is best
effort; the hub's periodic session sweep bounds what a lost message costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from storage.kv import redis_client

log = logging.getLogger(__name__)

ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]

# Handed to this node's handler (never published). ``control_lost``: the
# subscription failed, so messages published from now on may never arrive;
# caches that rely on them must stop trusting what they hold.
# ``control_resumed``: subscribed again (Redis confirmed it); whatever was
# published meanwhile is gone, so those caches drop everything and resume.
CONTROL_LOST = "control_lost"
CONTROL_RESUMED = "control_resumed"
# The subscription is checked with a PING this often; three intervals without
# a word from Redis count as lost (a connection that died without a reset).
HEALTH_CHECK_SECONDS = 10.0


class ControlBus(Protocol):
    async def publish(self, message: dict[str, Any]) -> None: ...

    async def start(self, handler: ControlHandler) -> None: ...

    async def close(self) -> None: ...


class MemoryControlBus:
    """One node: a published message is handled right away, in this process."""

    def __init__(self) -> None:
        self._handler: ControlHandler | None = None

    async def publish(self, message: dict[str, Any]) -> None:
        if self._handler is not None:
            await self._handler(message)

    async def start(self, handler: ControlHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None


class RedisControlBus:
    """Redis pub/sub on ``<channel>:control``; every node (the publisher too) handles each."""

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = f"{channel}:control"
        self._redis = redis_client(url, socket_connect_timeout=5)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, message: dict[str, Any]) -> None:
        try:
            await self._redis.publish(self._channel, orjson.dumps(message))
        except RedisError:
            log.warning(
                "control message not published (Redis unreachable): %s", message.get("type")
            )

    async def start(self, handler: ControlHandler) -> None:
        self._task = asyncio.create_task(self._listen(handler), name="parley-control-bus")
        # Wait briefly for the subscription so messages published right after start arrive.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def _listen(self, handler: ControlHandler) -> None:
        delay = 0.2
        lost = False

        async def tell(kind: str) -> None:
            try:
                await handler({"type": kind})
            except Exception:
                log.exception("control message handler failed")

        loop = asyncio.get_running_loop()
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                heard = loop.time()
                next_ping = heard + HEALTH_CHECK_SECONDS
                while True:
                    item = await pubsub.get_message(timeout=1.0)
                    now = loop.time()
                    if now >= next_ping:
                        await pubsub.ping()
                        next_ping = now + HEALTH_CHECK_SECONDS
                    if item is None:
                        if now - heard > 3 * HEALTH_CHECK_SECONDS:
                            raise RedisConnectionError("the control subscription went silent")
                        continue
                    heard = now
                    if item.get("type") == "subscribe":
                        # Redis confirmed it: from here on nothing published is missed.
                        self._subscribed.set()
                        delay = 0.2
                        if lost:
                            lost = False
                            await tell(CONTROL_RESUMED)
                        continue
                    if item.get("type") != "message":
                        continue
                    try:
                        message = orjson.loads(item["data"])
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
                    if isinstance(message, dict):
                        try:
                            await handler(message)
                        except Exception:
                            log.exception("control message handler failed")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                if not lost:
                    lost = True
                    await tell(CONTROL_LOST)
                log.warning("control bus lost Redis; resubscribing in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()


def build_control_bus(redis_url: str | None, channel: str) -> ControlBus:
    if redis_url:
        return RedisControlBus(redis_url, channel)
    return MemoryControlBus()

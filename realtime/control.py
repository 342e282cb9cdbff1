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
from redis.exceptions import RedisError

from storage.kv import redis_client

log = logging.getLogger(__name__)

ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]

# Handed to this node's handler (never published) when the subscription comes
# back after Redis was lost: whatever was published meanwhile never arrives,
# so caches that rely on control messages must drop everything they hold.
CONTROL_RESUMED = "control_resumed"


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
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                delay = 0.2
                if lost:
                    lost = False
                    try:
                        await handler({"type": CONTROL_RESUMED})
                    except Exception:
                        log.exception("control message handler failed")
                async for item in pubsub.listen():
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
                lost = True
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

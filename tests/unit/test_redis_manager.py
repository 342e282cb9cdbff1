"""The Redis manager's emit message and the drop of this node's own publishes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from realtime import codec
from realtime.hub import _RedisManager


@pytest.fixture
def manager() -> _RedisManager:
    # Never connects: only the message format and _listen are exercised.
    return _RedisManager("redis://127.0.0.1:9/0", channel="parley-test", json=codec)


async def test_own_publishes_are_dropped_and_others_kept(
    manager: _RedisManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[Any] = []
    handled: list[dict[str, Any]] = []

    async def publish(message: dict[str, Any]) -> None:
        published.append(codec.dumps(message).encode())

    async def handle(message: dict[str, Any]) -> None:
        handled.append(message)

    monkeypatch.setattr(manager, "_publish", publish)
    monkeypatch.setattr(manager, "_handle_emit", handle)
    await manager.emit("message:new", {"seq": 1, "body": {"host_id": "x"}}, to=["u:1"])
    [mine] = published
    assert handled[0]["data"] == [{"seq": 1, "body": {"host_id": "x"}}]
    assert orjson.loads(mine)["host_id"] == manager.host_id and not orjson.loads(mine)["binary"]

    other = dict(orjson.loads(mine), host_id="another-node")
    from_other = orjson.dumps(other)
    control = orjson.dumps({"method": "disconnect", "sid": "s", "host_id": manager.host_id})

    async def incoming() -> AsyncIterator[bytes]:
        for data in (mine, from_other, control):
            yield data

    monkeypatch.setattr(type(manager).__mro__[1], "_listen", lambda self: incoming(), raising=True)
    assert [data async for data in manager._listen()] == [from_other, control]

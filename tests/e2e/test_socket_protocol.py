"""Packets a real client library would never send, against a real node: answered or dropped.

Each case goes over a raw websocket (tests/support/raw_sockets.py), since the
Socket.IO client libraries cannot produce most of them. What a client must get:
an error ack for an event it asked an ack of, whatever its payload; for a frame
or packet outside the protocol, a closed connection, at once, with nothing of
it left on the node. Either way, another user's socket sees nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from client import ParleyClient
from tests.support.clients import signed_in_client
from tests.support.raw_sockets import WebSocketPeer
from tests.support.server import ServerProcess


@pytest.fixture
async def pair(sqlite_node: ServerProcess) -> AsyncIterator[tuple[ParleyClient, ParleyClient, str]]:
    """Two users in a direct conversation: the raw socket's owner, and a bystander (connected)."""
    owner = await signed_in_client(sqlite_node, "raw-owner", connect=False)
    bystander = await signed_in_client(sqlite_node, "bystander")
    conversation = await owner.open_direct(bystander.user_id or "", mode="plaintext")
    yield owner, bystander, str(conversation["id"])
    await owner.close()
    await bystander.close()


async def raw_peer(node: ServerProcess, client: ParleyClient) -> WebSocketPeer:
    return await WebSocketPeer.open(node.url, await client.fresh_access_token(), deflate=False)


async def ack(peer: WebSocketPeer, ack_id: int, timeout: float = 5.0) -> Any:
    """The payload of the ack with this id (other packets are skipped)."""
    prefix = f"43{ack_id}["
    while True:
        packet = await peer._next_packet(timeout)
        if packet.startswith(prefix):
            return orjson.loads(packet[len(prefix) - 1 :])[0]


async def closed_by_server(peer: WebSocketPeer, timeout: float = 5.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while True:
                await peer.ws.recv()
    except ConnectionClosed:
        return True
    except TimeoutError:
        return False


def sockets_connected(node: ServerProcess) -> float:
    text = httpx.get(f"{node.url}/metrics", timeout=5).text
    match = re.search(r"^parley_sockets_connected (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def bystander_still_hears(owner: ParleyClient, bystander: ParleyClient, cid: str) -> None:
    """The other user's socket is untouched: a message sent now reaches it."""
    text = f"still here {uuid.uuid4().hex[:6]}"
    await owner.request(
        "POST",
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": uuid.uuid4().hex, "body": {"text": text}},
    )
    while (message := await bystander.next_message(timeout=5))["body"].get("text") != text:
        pass
    assert message["conversation_id"] == cid


async def test_events_the_server_cannot_read_get_error_acks(
    sqlite_node: ServerProcess, pair: tuple[ParleyClient, ParleyClient, str]
) -> None:
    """Unparsable JSON, a non-string event name, an unknown event: each answered, socket kept."""
    owner, bystander, cid = pair
    peer = await raw_peer(sqlite_node, owner)
    try:
        cases: dict[str, tuple[str, str]] = {
            # python-socketio's own encoder writes NaN; JSON has no such value.
            "NaN": (
                f'["typing:update",{{"conversation_id":"{cid}","state":NaN}}]',
                "malformed_json",
            ),
            # JavaScript's JSON.stringify of a string cut inside an emoji.
            "unpaired surrogate": (
                f'["message:send",{{"conversation_id":"{cid}","client_msg_id":"s1",'
                '"kind":"text","body":{"text":"ab\\ud83d"}}]',
                "malformed_json",
            ),
            "nested too deep": ("[" * 2000 + "]" * 2000, "malformed_json"),
            "bytes after the JSON": ('["sync",{}] trailing', "malformed_json"),
            "list as the name": ("[[1],{}]", "invalid_request"),
            "object as the name": ('[{"a":1},{}]', "invalid_request"),
            "no name": ("[]", "invalid_request"),
            "unknown event": ('["mesage:send",{}]', "unknown_event"),
        }
        for ack_id, (name, (payload, code)) in enumerate(cases.items(), start=1):
            await peer.ws.send(f"42{ack_id}{payload}")
            answer = await ack(peer, ack_id)
            assert answer["error"]["code"] == code, (name, answer)
            assert answer["error"]["message"], name

        # Still the same working socket.
        await peer.ws.send(f'4299["sync",{{"positions":{{"{cid}":0}}}}]')
        assert "data" in await ack(peer, 99)
    finally:
        await peer.close()
    await bystander_still_hears(owner, bystander, cid)


@pytest.mark.parametrize(
    "frames",
    [
        ["x"],  # not Engine.IO: no packet type
        [""],
        ["451-", b"\x00\x01"],  # a binary event and its attachment: Parley speaks JSON text
        ["46"],  # a binary ack with no attachment count
        [b"\x04binary"],  # a bare binary frame
        ["49[]"],  # no such Socket.IO packet type
        ["42" + "1" * 120 + "[]"],  # an ack id longer than the library reads
    ],
    ids=["not-engineio", "empty", "binary-event", "binary-ack", "binary-frame", "type", "id"],
)
async def test_frames_outside_the_protocol_close_the_socket_at_once(
    sqlite_node: ServerProcess,
    pair: tuple[ParleyClient, ParleyClient, str],
    frames: list[str | bytes],
) -> None:
    """The connection ends at once and the node forgets it (not at the ping timeout)."""
    owner, bystander, cid = pair
    before = sockets_connected(sqlite_node)
    peer = await raw_peer(sqlite_node, owner)
    assert sockets_connected(sqlite_node) == before + 1
    for frame in frames:
        with contextlib.suppress(ConnectionClosed):  # the close is what we wait for
            await peer.ws.send(frame)
    assert await closed_by_server(peer), "the server kept the connection"
    for _ in range(30):
        if sockets_connected(sqlite_node) == before:
            break
        await asyncio.sleep(0.1)
    assert sockets_connected(sqlite_node) == before, "the node still counts the socket"
    await bystander_still_hears(owner, bystander, cid)

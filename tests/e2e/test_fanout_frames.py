"""The fan-out's frames on a real node (uvicorn, websockets-sansio): order, fallbacks, slow readers.

A message's websocket frame is written straight to a recipient's transport
when nothing older waits for that socket (realtime/frames.py); otherwise, and
for connections that negotiated permessage-deflate, the packet takes the
socket's Engine.IO queue. These tests check that every socket still sees its
conversation's seqs in order with none missing, and that a client that stops
reading is dropped with the node's memory bounded.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import ParleyClient
from tests.e2e.conftest import embedded_env
from tests.support.clients import signed_in_client
from tests.support.raw_sockets import StalledPeer, WebSocketPeer
from tests.support.server import ServerProcess

# Bursts from one user must not meet the per-user event limit.
UNLIMITED = {
    "PARLEY_REALTIME_EVENTS_PER_SECOND": "10000",
    "PARLEY_REALTIME_EVENTS_BURST": "100000",
    "PARLEY_CHAT_MAX_TEXT_CHARS": "100000",
}


def start_node(root: Path, name: str, **env: str) -> ServerProcess:
    return ServerProcess({**embedded_env(root), **UNLIMITED, **env}, name=name).start()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A node of its own, so its delivery counters count only this module's sockets.

    It accepts permessage-deflate (off by default) for the deflate client's test.
    """
    server = start_node(
        tmp_path_factory.mktemp("frames-node"), "frames-node", PARLEY_SERVER_WS_COMPRESSION="true"
    )
    yield server
    server.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[ParleyClient]]:
    """Clients a test signs in; closed afterwards."""
    made: list[ParleyClient] = []
    yield made
    for client in made:
        await client.close()


async def sign_in(
    node: ServerProcess, made: list[ParleyClient], *names: str, connect: bool = True
) -> list[ParleyClient]:
    signed = await asyncio.gather(*(signed_in_client(node, n, connect=connect) for n in names))
    made.extend(signed)
    return list(signed)


def metric(node: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{node.url}/metrics", timeout=5).text
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{selector}}}" if selector else "")) + r" (\S+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def frames_and_queued(node: ServerProcess) -> tuple[float, float]:
    name = "parley_socket_deliveries_total"
    return metric(node, name, path="frame"), metric(node, name, path="queue")


def rss_bytes(node: ServerProcess) -> int:
    assert node.proc is not None
    status = Path(f"/proc/{node.proc.pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


async def create_group(owner: ParleyClient, member_ids: list[str]) -> str:
    group = await owner.create_group("burst", member_ids, mode="plaintext")
    return str(group["id"])


async def send_burst(sender: ParleyClient, conversation_id: str, count: int, text: str) -> None:
    """``count`` messages, up to 8 in flight, so acks and fan-out interleave on the socket."""
    in_flight = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with in_flight:
            await sender.send_text(conversation_id, f"{text} {i}", client_msg_id=uuid.uuid4().hex)

    await asyncio.gather(*(one(i) for i in range(count)))


async def collect_seqs(client: ParleyClient, conversation_id: str, count: int) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < count:
        message = await client.next_message(timeout=15)
        if message["conversation_id"] == conversation_id:
            seqs.append(int(message["seq"]))
    return seqs


async def peer_seqs(peer: WebSocketPeer, conversation_id: str, count: int) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < count:
        message: Any = await peer.next_event("message:new", timeout=15)
        if message["conversation_id"] == conversation_id:
            seqs.append(int(message["seq"]))
    return seqs


async def test_burst_with_acks_keeps_every_sockets_order(
    node: ServerProcess, clients: list[ParleyClient]
) -> None:
    """500 messages from 4 members at once: each socket sees seqs strictly increasing, no gaps."""
    members = await sign_in(node, clients, "ann", "ben", "cat", "dan")
    owner, *others = members
    conversation_id = await create_group(owner, [o.user_id or "" for o in others])
    assert await collect_seqs(owner, conversation_id, 1) == [1]  # "created"
    for other in others:
        assert await collect_seqs(other, conversation_id, 1) == [1]
    frames_before, _ = frames_and_queued(node)

    receiving = [asyncio.create_task(collect_seqs(m, conversation_id, 500)) for m in members]
    await asyncio.gather(*(send_burst(m, conversation_id, 125, m.device_name) for m in members))
    for seqs in await asyncio.gather(*receiving):
        assert seqs == list(range(2, 502))

    frames_after, _ = frames_and_queued(node)
    assert frames_after - frames_before > 0, "no frame was written straight to a transport"


async def test_deflate_client_gets_every_message_in_order(
    node: ServerProcess, clients: list[ParleyClient]
) -> None:
    """A socket that negotiated permessage-deflate takes the queue and still sees every seq."""
    owner, deflated, plain = await sign_in(node, clients, "owner", "zip", "raw", connect=False)
    await owner.connect()
    conversation_id = await create_group(owner, [deflated.user_id or "", plain.user_id or ""])
    zip_peer = await WebSocketPeer.open(node.url, await deflated.fresh_access_token(), deflate=True)
    raw_peer = await WebSocketPeer.open(node.url, await plain.fresh_access_token(), deflate=False)
    try:
        assert [e.name for e in zip_peer.extensions] == ["permessage-deflate"]
        assert raw_peer.extensions == []
        _, queued_before = frames_and_queued(node)
        # Long enough for the deflate frames to be compressed (and look nothing alike).
        text = "a compressible line of text " * 20
        receiving = [
            asyncio.create_task(peer_seqs(p, conversation_id, 200)) for p in (zip_peer, raw_peer)
        ]
        await send_burst(owner, conversation_id, 200, text)
        for seqs in await asyncio.gather(*receiving):
            assert seqs == list(range(2, 202))
        _, queued_after = frames_and_queued(node)
        assert queued_after - queued_before >= 200, "the deflate socket's packets were queued"
    finally:
        await zip_peer.close()
        await raw_peer.close()


async def test_client_that_stops_reading_is_dropped_with_memory_bounded(
    tmp_path: Path, clients: list[ParleyClient]
) -> None:
    """A socket that never reads is dropped once its queue passes the limit; RSS stays bounded."""
    node = start_node(tmp_path, "slow-node", PARLEY_REALTIME_MAX_PENDING_PACKETS="10")
    try:
        owner, reader, stalled = await sign_in(node, clients, "own", "rdr", "slow", connect=False)
        await owner.connect()
        await reader.connect()
        conversation_id = await create_group(owner, [reader.user_id or "", stalled.user_id or ""])
        for client in (owner, reader):
            assert await collect_seqs(client, conversation_id, 1) == [1]
        token = await stalled.fresh_access_token()
        slow = await asyncio.to_thread(StalledPeer, node.url, token)
        try:
            text = "x" * 99_000
            half = 400  # 40 MB for the stalled socket, were it kept
            after = 2 * half  # then twice as much: 79 MB, were it kept
            receiving = asyncio.create_task(collect_seqs(reader, conversation_id, half + after))
            await send_burst(owner, conversation_id, half, text)
            record = await asyncio.to_thread(
                node.wait_for_record, lambda r: r.get("message") == "dropping a slow consumer"
            )
            assert record["queued"] > 10
            assert metric(node, "parley_slow_consumers_dropped_total") == 1
            assert metric(node, "parley_sockets_connected") == 2
            # The node's own working set (the database, buffers of the other
            # sockets, the allocator's arenas) moves by -10 to +55 MB (seen)
            # while 79 MB more pass through it, around an RSS of about 400 MB;
            # keeping them for the stalled socket would add all 79 MB on top.
            rss_half = rss_bytes(node)
            await send_burst(owner, conversation_id, after, text)
            assert await receiving == list(range(2, half + after + 2)), "the reader missed nothing"
            growth = rss_bytes(node) - rss_half
            kept_would_be = after * len(text)
            assert growth < kept_would_be, f"the node grew by {growth} bytes"
            assert await asyncio.to_thread(slow.is_closed_by_server), "its connection was reset"
        finally:
            slow.close()
    finally:
        node.stop()


async def test_compression_is_off_unless_configured(
    sqlite_node: ServerProcess, clients: list[ParleyClient]
) -> None:
    """A node on the defaults declines permessage-deflate: every socket can share the frame."""
    (user,) = await sign_in(sqlite_node, clients, "plainly", connect=False)
    peer = await WebSocketPeer.open(sqlite_node.url, await user.fresh_access_token(), deflate=True)
    try:
        assert peer.extensions == []
    finally:
        await peer.close()

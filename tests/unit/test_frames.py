"""When the fan-out may write a frame straight to a websocket (realtime/frames.py).

Real engine.io sockets (their own websocket handler and writer task) served
through uvicorn's websockets-sansio protocol, fed a real handshake over a
transport that records what is written: only the transport is fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import engineio
import pytest
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

from realtime.frames import (
    abort_connection,
    direct_transport,
    record_websocket_protocols,
    text_frame,
)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@dataclass
class Served:
    socket: Any
    protocol: WebSocketsSansIOProtocol
    transport: FakeTransport
    task: asyncio.Task[None] | None = field(default=None)


def handshake(extensions: str | None) -> bytes:
    lines = [
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """Serve one engine.io socket's websocket through uvicorn's protocol."""
    server = engineio.AsyncServer(async_mode="asgi")
    record_websocket_protocols(server)
    served: list[Served] = []

    async def start(extensions: str | None = None) -> Served:
        socket = AsyncSocket(server, f"sid-{len(served)}")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert (await receive())["type"] == "websocket.connect"  # as engineio's ASGI driver
            websocket = server._async["websocket"](socket._websocket_handler, server)
            await websocket({"asgi.receive": receive, "asgi.send": send})

        config = Config(app=app, ws="websockets-sansio", proxy_headers=False, log_config=None)
        config.load()
        protocol = WebSocketsSansIOProtocol(config, ServerState(), {})
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(handshake(extensions))
        await settle()
        assert transport.written[0].startswith(b"HTTP/1.1 101")
        one = Served(socket, protocol, transport)
        served.append(one)
        return one

    yield start
    for one in served:
        if not one.protocol.disconnected:
            one.protocol.connection_lost(None)
    await settle()


def written_frames(transport: FakeTransport) -> list[bytes]:
    return transport.written[1:]  # after the handshake response


async def test_an_idle_websocket_takes_frames_directly(serve: Any) -> None:
    """A parked writer, an empty queue, an open connection: the frame may go to the transport."""
    served = await serve()
    assert direct_transport(served.socket) is served.transport


async def test_the_frame_is_the_one_uvicorn_would_write(serve: Any) -> None:
    """text_frame gives the bytes the writer task sends for the same packet."""
    served = await serve()
    for size in (10, 200, 70_000):  # 7-bit, 16-bit and 64-bit payload lengths
        pkt = eio_packet.Packet(eio_packet.MESSAGE, "2" + "é" * size)
        served.socket.queue.put_nowait(pkt)
        await settle()
        assert written_frames(served.transport)[-1] == text_frame(pkt.encode())
    assert text_frame("4hi") == Frame(Opcode.TEXT, b"4hi").serialize(mask=False)


async def test_no_frame_overtakes_a_queued_packet(serve: Any) -> None:
    """From the moment a packet is queued until its writer has written it, no direct write."""
    served = await serve()
    pkt = eio_packet.Packet(eio_packet.MESSAGE, "2queued")
    served.socket.queue.put_nowait(pkt)
    for _ in range(20):  # each step of the writer's wake-up, one loop turn at a time
        if direct_transport(served.socket) is not None:
            assert text_frame(pkt.encode()) in written_frames(served.transport)
        await asyncio.sleep(0)
    assert direct_transport(served.socket) is served.transport


async def test_above_the_high_water_mark_packets_queue(serve: Any) -> None:
    """uvicorn paused writing (its buffer is full): no direct write until it resumes."""
    served = await serve()
    served.protocol.pause_writing()
    assert direct_transport(served.socket) is None
    served.protocol.resume_writing()
    assert direct_transport(served.socket) is served.transport


async def test_permessage_deflate_connections_are_not_written_to(serve: Any) -> None:
    """A connection that negotiated permessage-deflate never gets the shared frame."""
    served = await serve("permessage-deflate; client_max_window_bits")
    assert served.protocol.conn.extensions
    assert direct_transport(served.socket) is None
    assert not abort_connection(served.socket)


async def test_closing_and_upgrading_sockets_are_not_written_to(serve: Any) -> None:
    """Upgrading, close sent, transport closing, peer gone: the queue path."""
    served = await serve()
    socket, protocol, transport = served.socket, served.protocol, served.transport
    socket.upgrading = True
    assert direct_transport(socket) is None
    socket.upgrading = False
    protocol.close_sent = True
    assert direct_transport(socket) is None
    protocol.close_sent = False
    transport.closing = True
    assert direct_transport(socket) is None
    transport.closing = False
    assert direct_transport(socket) is transport
    protocol.connection_lost(None)
    assert direct_transport(socket) is None


async def test_a_socket_without_a_recorded_protocol_is_not_written_to() -> None:
    """Long-polling sockets (and any websocket we did not serve) take the queue."""
    server = engineio.AsyncServer(async_mode="asgi")
    socket = AsyncSocket(server, "polling")
    assert direct_transport(socket) is None
    assert not abort_connection(socket)


async def test_abort_connection_resets_the_transport(serve: Any) -> None:
    """A slow consumer's connection is aborted, not left to drain a full buffer."""
    served = await serve()
    assert abort_connection(served.socket)
    assert served.transport.aborted

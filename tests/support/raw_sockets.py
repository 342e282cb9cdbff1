"""Socket.IO clients with nothing between the test and the websocket.

:class:`WebSocketPeer` speaks Engine.IO 4 / Socket.IO 5 over a ``websockets``
client connection, so a test chooses what the handshake offers (e.g.
permessage-deflate) and sees every packet in the order it arrived.
:class:`StalledPeer` does the same handshake over a blocking TCP socket with a
tiny receive buffer and then never reads again: a slow consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.typing import Origin
from websockets.uri import parse_uri


def _socket_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"


def _event(packet: str) -> tuple[str, Any] | None:
    """``(name, payload)`` of a Socket.IO EVENT in an Engine.IO MESSAGE, else ``None``."""
    if not packet.startswith("42"):
        return None
    name, *args = orjson.loads(packet[2:])
    return str(name), (args[0] if args else None)


class WebSocketPeer:
    """One authenticated Socket.IO socket, read packet by packet."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, base_url: str, token: str, *, deflate: bool) -> WebSocketPeer:
        ws = await connect(
            _socket_url(base_url),
            compression="deflate" if deflate else None,
            max_size=None,
            ping_interval=None,
        )
        peer = cls(ws)
        opened = str(await ws.recv())
        assert opened.startswith("0{"), opened  # Engine.IO OPEN
        await ws.send("40" + orjson.dumps({"token": token}).decode())
        # Socket.IO CONNECT accepted; events emitted by the connect handler
        # itself (presence) may come first.
        while not (await peer._next_packet(10)).startswith("40{"):
            pass
        return peer

    @property
    def extensions(self) -> list[Any]:
        return list(self.ws.protocol.extensions)

    async def _next_packet(self, timeout: float) -> str:
        while True:
            async with asyncio.timeout(timeout):
                packet = str(await self.ws.recv())
            if packet == "2":  # Engine.IO PING: answer, or the server drops us
                await self.ws.send("3")
                continue
            return packet

    async def next_event(self, name: str, timeout: float = 10.0) -> Any:
        """The payload of the next event called ``name`` (other packets are skipped)."""
        while True:
            event = _event(await self._next_packet(timeout))
            if event is not None and event[0] == name:
                return event[1]

    async def close(self) -> None:
        await self.ws.close()


class StalledPeer:
    """A Socket.IO socket that authenticates, then stops reading (blocking; use a thread)."""

    def __init__(self, base_url: str, token: str, *, receive_buffer: int = 4096) -> None:
        uri = parse_uri(_socket_url(base_url))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connect, so the window the kernel advertises stays small.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect((uri.host, uri.port))
        self.protocol = ClientProtocol(uri, origin=Origin(base_url))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        texts = self._read_texts(until=lambda text: text.startswith("0{"))
        assert texts, "no Engine.IO OPEN"
        self.protocol.send_text(b"40" + orjson.dumps({"token": token}))
        self._flush()
        self._read_texts(until=lambda text: text.startswith("40{"))

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def _read_texts(self, until: Any) -> list[str]:
        texts: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.protocol.receive_data(self.sock.recv(65536))
            for event in self.protocol.events_received():
                if isinstance(event, Response):
                    assert event.status_code == 101, event
                elif isinstance(event, Frame):
                    text = bytes(event.data).decode()
                    texts.append(text)
                    if until(text):
                        return texts
        raise TimeoutError("the handshake did not finish")

    def is_closed_by_server(self) -> bool:
        """Whether the server has reset or closed the connection (reads what waits, to see)."""
        self.sock.setblocking(False)
        try:
            while True:
                if not self.sock.recv(1 << 20):
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

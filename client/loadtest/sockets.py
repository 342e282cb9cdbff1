"""Minimal Socket.IO v5 clients for the load generator: cheap enough to run thousands per process.

The protocol subset (Engine.IO v4 over websocket only): ``0{...}`` open,
``40{"token": ...}`` connect, ``40``/``44`` answer, ``42<id>[...]`` emit with
an ack, ``43<id>[...]`` ack, ``42[...]`` event, ``2`` -> ``3`` ping/pong (and
websocket PING -> PONG), ``41``/``1`` close.

A client is one socket of one session; what it does with the frames (latency,
sequence bookkeeping, reconnecting) belongs to its :class:`Owner`, the
generator of its process. Transports:

* ``raw`` (:class:`FramedClient`): RFC 6455 frames written and parsed by hand on
  an asyncio ``Protocol`` (masking with ``websockets``' C helper); no task per
  socket. The cheapest (``bench/fanout --part clients``).
* ``ws`` (:class:`SansIOClient`): the same Socket.IO framing on ``websockets``'
  sans-I/O ``ClientProtocol``, also in a ``Protocol`` callback.
* ``ws-asyncio`` (:class:`AsyncioClient`): ``websockets``' asyncio client (a
  reader task per socket).
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import os
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

NEW_PREFIX = '42["message:new",'
AckCallback = Callable[[Any], None]


class Owner(Protocol):
    """What a socket reports to the generator that owns it."""

    def on_message(self, client: SocketClient, frame: str) -> None: ...

    def on_lost(self, client: SocketClient, was_connected: bool) -> None: ...

    def on_other_event(self, client: SocketClient, frame: str) -> None: ...


class ConnectRefusedError(ConnectionError):
    """The server answered the Socket.IO connect with an error (``44{...}``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def split_url(url: str) -> tuple[str, int, bool, str]:
    """host, port, tls, path prefix of an http(s)/ws(s) base URL."""
    parts = urlsplit(url)
    tls = parts.scheme in ("https", "wss")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if tls else 80)
    return host, port, tls, parts.path.rstrip("/")


class SocketClient(abc.ABC):
    """One Socket.IO connection: the handshake state machine and acks; transports subclass."""

    def __init__(self, owner: Owner, index: int, socketio_path: str = "/socket.io/") -> None:
        self.owner = owner
        self.index = index
        self.socketio_path = socketio_path
        self.token = ""
        self.connected = False
        self.closing = False
        self.last_rx = 0.0
        self.ping_deadline = 50.0  # pingInterval + pingTimeout, from the open packet
        self._ack = 0
        self._acks: dict[int, AckCallback] = {}
        self._stage = "handshake"
        self._opened: asyncio.Future[str] | None = None

    # -- connecting -----------------------------------------------------------

    async def connect(self, url: str, token: str, timeout: float = 30.0) -> None:
        """One attempt: websocket, Engine.IO open, Socket.IO connect with the token."""
        self.token = token
        self.closing = False
        self._stage = "handshake"
        self._opened = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._open(url)
                reply = await self._opened
        except BaseException:
            self._abort()
            raise
        if not reply.startswith("40"):
            self._abort()
            code, message = "refused", reply[:200]
            with contextlib.suppress(Exception):
                data = orjson.loads(reply[2:])
                inner = data.get("data") or {}
                code = str(inner.get("code") or "refused")
                message = str(inner.get("message") or data.get("message") or "")
            raise ConnectRefusedError(code, message)
        self.connected = True
        self.last_rx = time.monotonic()

    def _fail_open(self, reason: str) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(ConnectionError(reason))

    # -- frames ---------------------------------------------------------------

    def on_text(self, frame: str) -> None:
        self.last_rx = time.monotonic()
        if self._stage == "ready":
            if frame.startswith(NEW_PREFIX):
                self.owner.on_message(self, frame)
            elif frame.startswith("43"):
                bracket = frame.find("[")
                callback = self._acks.pop(int(frame[2:bracket]), None)
                if callback is not None:
                    body = orjson.loads(frame[bracket:])
                    callback(body[0] if body else None)
            elif frame == "2":
                self.send_raw("3")
            elif frame.startswith("42"):
                self.owner.on_other_event(self, frame)
            elif frame.startswith("41") or frame.startswith("1"):
                self._abort()  # the server closed us: a lost connection, reconnect
        elif self._stage == "handshake" and frame.startswith("0"):
            with contextlib.suppress(Exception):
                opening = orjson.loads(frame[1:])
                self.ping_deadline = (opening["pingInterval"] + opening["pingTimeout"]) / 1000
            self._stage = "auth"
            self.send_raw("40" + orjson.dumps({"token": self.token}).decode())
        elif self._stage == "auth" and frame[:2] in ("40", "44"):
            self._stage = "ready"
            if self._opened is not None and not self._opened.done():
                self._opened.set_result(frame)
        elif frame == "2":
            self.send_raw("3")

    def emit(self, packet: bytes, callback: AckCallback) -> int:
        """Send ``42<id><packet>`` (packet: a JSON array, event name first); ``callback``
        gets the ack's first argument, or None if the connection is lost first."""
        self._ack += 1
        self._acks[self._ack] = callback
        self.send_raw(f"42{self._ack}" + packet.decode())
        return self._ack

    async def request(self, packet: bytes, timeout: float = 15.0) -> Any:
        """Emit and wait for the ack."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any) -> None:
            if future.done():
                return
            if result is None:
                future.set_exception(ConnectionError("connection lost before the ack"))
            else:
                future.set_result(result)

        self.emit(packet, done)
        async with asyncio.timeout(timeout):
            return await future

    def lost(self) -> None:
        """The transport closed (whatever the reason)."""
        was = self.connected
        self.connected = False
        self._fail_open("connection lost")
        callbacks, self._acks = self._acks, {}
        for callback in callbacks.values():
            with contextlib.suppress(Exception):
                callback(None)
        if not self.closing:
            self.owner.on_lost(self, was)

    # -- transports -------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self, url: str) -> None:
        """Open the websocket; frames then arrive through :meth:`on_text`."""

    @abc.abstractmethod
    def send_raw(self, frame: str) -> None:
        """Write one Engine.IO text frame."""

    @abc.abstractmethod
    def _abort(self) -> None:
        """Drop the transport now (``lost`` follows)."""

    def abort(self) -> None:
        self._abort()

    async def close(self) -> None:
        self.closing = True
        self.connected = False
        self._abort()


def _ssl_context(tls: bool) -> ssl.SSLContext | None:
    return ssl.create_default_context() if tls else None


class FramedClient(SocketClient):
    """RFC 6455 framing by hand on an asyncio transport (masking with ``websockets``'
    C helper): the server's frames are unmasked, so reading one is a header check
    and a slice. No compression."""

    transport: asyncio.Transport | None = None

    async def _open(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        host, port, tls, prefix = split_url(url)
        self._buffer = bytearray()
        self._handshaken = False
        self._partial: list[bytes] = []
        self.transport, _ = await loop.create_connection(
            lambda: _FramedTransport(self), host, port, ssl=_ssl_context(tls)
        )
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {prefix}{self.socketio_path}?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail_open(f"handshake: {bytes(buffer[:60]).decode(errors='replace')}")
                self._abort()
                return
            del buffer[: end + 4]
            self._handshaken = True
        at = 0
        size = len(buffer)
        while size - at >= 2:
            head, length = buffer[at], buffer[at + 1] & 0x7F
            start = at + 2
            if length == 126:
                if size - at < 4:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 4], "big")
                start = at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 10], "big")
                start = at + 10
            if size - start < length:
                break
            payload = bytes(buffer[start : start + length])
            at = start + length
            opcode = head & 0x0F
            if opcode in (1, 0):  # text, continuation
                if not head & 0x80:
                    self._partial.append(payload)
                    continue
                if self._partial:
                    payload = b"".join([*self._partial, payload])
                    self._partial = []
                self.on_text(payload.decode())
            elif opcode == 9:  # ping
                self._write(0x8A, payload)
            elif opcode == 8:  # close
                self._abort()
                break
        del buffer[:at]

    def _write(self, head: int, payload: bytes) -> None:
        from websockets.speedups import apply_mask

        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = bytes((head, 0x80 | n))
        elif n < 65536:
            header = bytes((head, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((head, 0x80 | 127)) + n.to_bytes(8, "big")
        self.transport.write(header + mask + apply_mask(payload, mask))

    def send_raw(self, frame: str) -> None:
        self._write(0x81, frame.encode())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _FramedTransport(asyncio.Protocol):
    def __init__(self, client: FramedClient) -> None:
        self.client = client
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        # Only the current transport speaks for the client (not one of an earlier attempt).
        if self.client.transport is None or self.client.transport is self.transport:
            self.client.lost()


class SansIOClient(SocketClient):
    """``websockets``' sans-I/O ClientProtocol on an asyncio transport: no task per socket."""

    transport: asyncio.Transport | None = None
    compression = False

    async def _open(self, url: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
        from websockets.uri import parse_uri

        loop = asyncio.get_running_loop()
        host, port, tls, prefix = split_url(url)
        scheme = "wss" if tls else "ws"
        uri = parse_uri(
            f"{scheme}://{host}:{port}{prefix}{self.socketio_path}?EIO=4&transport=websocket"
        )
        extensions = [ClientPerMessageDeflateFactory()] if self.compression else None
        self.proto = ClientProtocol(uri, extensions=extensions, max_size=2**22)
        self.transport, _ = await loop.create_connection(
            lambda: _SansIOTransport(self), host, port, ssl=_ssl_context(tls)
        )
        self.proto.send_request(self.proto.connect())
        self._flush()

    def _flush(self) -> None:
        data = self.proto.data_to_send()
        if data and self.transport is not None:
            self.transport.writelines(data)

    def received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        self.proto.receive_data(data)
        for event in self.proto.events_received():
            if isinstance(event, Response):
                if event.status_code != 101:
                    self._fail_open(f"handshake {event.status_code}")
                continue
            if not isinstance(event, Frame):
                continue
            if event.opcode is Opcode.CLOSE:
                self._abort()
                return
            if event.opcode is Opcode.TEXT:
                self.on_text(bytes(event.data).decode())
        self._flush()

    def send_raw(self, frame: str) -> None:
        self.proto.send_text(frame.encode())
        self._flush()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _SansIOTransport(asyncio.Protocol):
    def __init__(self, client: SansIOClient) -> None:
        self.client = client
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.transport is None or self.client.transport is self.transport:
            self.client.lost()


class AsyncioClient(SocketClient):
    """The same client on ``websockets``' asyncio API: a reader task per socket."""

    compression = False
    ws: Any = None

    async def _open(self, url: str) -> None:
        from websockets.asyncio.client import connect

        host, port, tls, prefix = split_url(url)
        scheme = "wss" if tls else "ws"
        self.ws = await connect(
            f"{scheme}://{host}:{port}{prefix}{self.socketio_path}?EIO=4&transport=websocket",
            compression="deflate" if self.compression else None,
            ping_interval=None,
            open_timeout=30,
            close_timeout=1,
            max_size=2**22,
        )
        self._sending: set[asyncio.Task[None]] = set()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                if isinstance(frame, str):
                    self.on_text(frame)
        self.lost()

    def send_raw(self, frame: str) -> None:
        task = asyncio.get_running_loop().create_task(self.ws.send(frame))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _abort(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()


KINDS: dict[str, type[SocketClient]] = {
    "raw": FramedClient,
    "ws": SansIOClient,
    "ws-asyncio": AsyncioClient,
}

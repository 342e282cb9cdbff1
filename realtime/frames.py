"""Writing one websocket frame straight to a socket's transport, when that is safe.

Server-to-client frames are unmasked (RFC 6455 section 5.1), so without an
extension (permessage-deflate compresses per connection, RFC 7692) a text
message's frame is the same bytes for every recipient: the fan-out
(realtime/fanout.py) builds it once with :func:`text_frame` and writes it to
each transport :func:`direct_transport` hands out, instead of queueing the
packet for the socket's Engine.IO writer task, which would wake up and take it
through engineio's ``WebSocket.send``, the ASGI ``send`` and uvicorn's
websockets ``ServerProtocol`` to the same ``transport.write``.

Every access to library internals is here, written against python-engineio
4.15 (``AsyncSocket``, ``async_drivers.asgi.WebSocket``), uvicorn 0.54
(``ws="websockets-sansio"``: ``WebSocketsSansIOProtocol``), websockets 17 and
CPython 3.11's ``asyncio.Queue``. Whatever they no longer look like, the
socket gets no transport (:class:`FrameWebSocket` records none, or
:func:`direct_transport` returns ``None``) and the packet takes the queue as
before: an upgrade degrades to the slower path, it does not break delivery.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engineio.async_drivers.asgi import WebSocket
from websockets.frames import Frame, Opcode
from websockets.protocol import State

log = logging.getLogger(__name__)

# The first character of every Engine.IO text packet: its type, 0 to 6.
_ENGINEIO_PACKET_TYPES = frozenset("0123456")
# The attribute of an engineio AsyncSocket that holds its uvicorn protocol
# while its websocket is being served.
_PROTOCOL = "parley_ws_protocol"

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - another uvicorn, or none: queue path only
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]


def text_frame(text: str) -> bytes:
    """The bytes of one final, unmasked, uncompressed websocket text frame carrying ``text``."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


class FrameWebSocket(WebSocket):  # type: ignore[misc]
    """engineio's ASGI websocket wrapper, recording uvicorn's protocol on the socket.

    engine.io builds it as ``WebSocket(socket._websocket_handler, server)``, so
    the handler's ``__self__`` is the ``AsyncSocket``; the ASGI ``send`` that
    uvicorn's websockets-sansio implementation passes (through socketio's
    ``ASGIApp`` and ``server.drain.RefuseNewSockets``, which forward it as is)
    is the protocol's bound ``send``. Anything else (another ASGI server or
    websocket implementation, a middleware wrapping ``send``) records nothing.
    """

    async def __call__(self, environ: dict[str, Any]) -> Any:
        socket = getattr(self.handler, "__self__", None)
        protocol = getattr(environ.get("asgi.send"), "__self__", None)
        recorded = (
            socket is not None
            and WebSocketsSansIOProtocol is not None
            and isinstance(protocol, WebSocketsSansIOProtocol)
            and _frames_fit(socket, protocol)
        )
        if recorded:
            setattr(socket, _PROTOCOL, protocol)
        try:
            return await super().__call__(environ)
        finally:
            if recorded:
                setattr(socket, _PROTOCOL, None)

    async def wait(self) -> Any:
        """The next frame, or ``OSError`` for one that is not an Engine.IO packet.

        engineio parses a frame outside its receive loop's error handling: a
        text frame that is empty or does not start with a packet type raised
        out of the handler, which left the socket (and its user's presence)
        behind until the ping timeout. As ``OSError`` it ends the loop the way
        a closed connection does, and the socket is closed at once.
        """
        data = await super().wait()
        if isinstance(data, str) and data[:1] not in _ENGINEIO_PACKET_TYPES:
            log.info("a websocket sent a frame that is not Engine.IO: closing it")
            raise OSError("not an Engine.IO packet")
        return data


# What direct_transport reads, checked once per websocket (not per frame).
_SOCKET_ATTRIBUTES = ("upgraded", "upgrading", "queue")
_PROTOCOL_ATTRIBUTES = ("handshake_complete", "close_sent", "disconnected", "writable", "transport")


def _frames_fit(socket: Any, protocol: Any) -> bool:
    """Our frames fit this connection (it negotiated no extension), and the socket
    and uvicorn's protocol still have everything :func:`direct_transport` reads."""
    conn: Any = getattr(protocol, "conn", None)
    if (
        any(not hasattr(socket, name) for name in _SOCKET_ATTRIBUTES)
        or not hasattr(socket.queue, "_getters")
        or any(not hasattr(protocol, name) for name in _PROTOCOL_ATTRIBUTES)
        or not hasattr(conn, "state")
        or not isinstance(getattr(conn, "extensions", None), list)
    ):
        log.warning("engineio or uvicorn changed; fan-out frames take the send queue")
        return False
    # permessage-deflate (RFC 7692) compresses each connection's frames its own
    # way; websockets negotiated it in ServerProtocol.accept, before the app ran.
    return not conn.extensions


def direct_transport(socket: Any) -> asyncio.Transport | None:
    """The transport to write a frame for this Engine.IO socket to now, or ``None``.

    ``None`` unless all of these hold, so that writing now is what the
    socket's writer task would have written next, and the same bytes:

    * the socket is on a websocket (upgraded, not upgrading) served by
      uvicorn's websockets-sansio protocol (:class:`FrameWebSocket`);
    * nothing waits in its send queue and its writer task is parked on it
      (a getter is pending): the writer holds no packet it took out and has
      not written yet, so a frame written now cannot overtake an older one;
    * uvicorn may write (``writable``: its transport buffer is below the
      high-water mark; once above, packets queue and the slow-consumer check
      in realtime/hub.py sees them), the handshake is done, no close was sent,
      the peer is still connected and the transport is not closing;
    * the connection negotiated no extension (no permessage-deflate; checked
      once, when the websocket was accepted).
    """
    protocol = getattr(socket, _PROTOCOL, None)
    if protocol is None or not socket.upgraded or socket.upgrading:
        return None
    queue = socket.queue
    if not queue.empty():
        return None
    getters = queue._getters  # CPython asyncio.Queue: its waiting get()s
    if not getters or getters[0].done():
        return None
    if (
        not protocol.writable.is_set()
        or not protocol.handshake_complete
        or protocol.close_sent
        or protocol.disconnected
    ):
        return None
    if protocol.conn.state is not State.OPEN:
        return None
    transport: asyncio.Transport = protocol.transport
    if transport.is_closing():
        return None
    return transport


def record_websocket_protocols(eio: Any) -> None:
    """Serve this engine.io server's websockets with :class:`FrameWebSocket`.

    engine.io picks the wrapper class from its async driver's table
    (``_async["websocket"]``), a dict shared by every server in the process,
    so this server gets a copy with ours in it.
    """
    drivers = getattr(eio, "_async", None)
    if isinstance(drivers, dict) and drivers.get("websocket") is WebSocket:
        eio._async = {**drivers, "websocket": FrameWebSocket}
    else:
        log.warning("engineio's ASGI websocket driver changed; fan-out frames take the send queue")


def abort_connection(socket: Any) -> bool:
    """Reset this Engine.IO socket's websocket connection at once, if we hold its transport.

    For a client that stopped reading: engine.io's own close cannot reach it
    (the writer task waits for uvicorn's buffer to drain, which it never will,
    and so would a close frame), and the connection, its buffers and tasks
    would linger until the client goes away. Aborting the transport frees them
    now (uvicorn sees the connection lost) and the client sees a reset.
    """
    protocol = getattr(socket, _PROTOCOL, None)
    if protocol is None:
        return False
    protocol.transport.abort()
    return True

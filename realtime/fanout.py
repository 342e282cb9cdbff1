"""The local half of an emit: one frame, written once per recipient, no task each.

python-socketio's ``AsyncManager.emit`` encodes the packet once, then starts
one task per recipient socket (``_send_eio_packet`` -> ``send_packet`` ->
``socket.send``: a socket lookup, a ping-timeout check, a queue put and a log
call, each awaited) and waits for all of them. Then each socket's Engine.IO
writer task wakes up (a task per wake-up, in ``asyncio.wait_for``) and takes
the packet through engineio's ``WebSocket.send``, the ASGI ``send`` and
uvicorn's websockets protocol to ``transport.write``: for a message to a group
of M, M wake-ups and a handful of Python layers each (bench/fanout).

Here the Socket.IO packet is encoded once, and so is its websocket text frame
(server frames are unmasked, so without permessage-deflate the bytes are the
same for every recipient, as in ``websockets.broadcast``). For each recipient
whose websocket can take it now (realtime/frames.py: its send queue is empty
and its writer parked on it, uvicorn's buffer below its high-water mark, no
extension negotiated, the connection open) the frame goes straight to the
transport. Any other socket (long-polling, upgrading, deflate, a backlog, a
buffer above the high-water mark) gets the packet in its Engine.IO send queue
(``put_nowait``), for its writer task, as before. Delivery order per socket is
unchanged: a frame is written only when nothing older is queued or held by the
writer. A socket that is closing or gone is skipped, as ``send_packet`` does; a
dead socket is still found by the ping loop. Packets with binary attachments
take the queue; emits with a callback (none in Parley) keep the library's path.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from realtime.frames import direct_transport, text_frame


class DirectEmitManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's in-memory manager with the direct local emit.

    For Redis, put it after the pub/sub manager in the bases
    (``class M(socketio.AsyncRedisManager, DirectEmitManager)``): the pub/sub
    ``emit`` still publishes to the other nodes, and its local delivery
    (``super().emit`` in ``_handle_emit``) lands here.

    ``frames_written`` and ``packets_queued`` count local deliveries by path.
    """

    frames_written = 0
    packets_queued = 0

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        namespace = namespace or "/"
        if callback is not None:
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback
            )
            return
        if namespace not in self.rooms:
            return
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        packets = [
            eio_packet.Packet(eio_packet.MESSAGE, p)
            for p in (encoded if isinstance(encoded, list) else [encoded])
        ]
        for p in packets:
            p.encode()  # cached in the packet: every socket's writer reuses it
        # One text packet (no binary attachments): the same frame for every websocket.
        frame = None if isinstance(encoded, list) else text_frame(packets[0].encode())
        written = queued = 0
        sockets = self.server.eio.sockets
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed or socket.closing:
                continue
            if frame is not None and (transport := direct_transport(socket)) is not None:
                transport.write(frame)
                written += 1
                continue
            for p in packets:
                socket.queue.put_nowait(p)
            queued += 1
        self.frames_written += written
        self.packets_queued += queued

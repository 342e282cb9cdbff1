"""The local half of an emit, without a task and an await per recipient.

python-socketio's ``AsyncManager.emit`` encodes the packet once, then starts
one task per recipient socket (``_send_eio_packet`` -> ``send_packet`` ->
``socket.send``: a socket lookup, a ping-timeout check, a queue put and a log
call, each awaited) and waits for all of them. For a message to a group of M
that is M tasks created, scheduled and collected per message, which was the
largest share of the hub's time per delivery under load (bench/fanout).

Here the same packet goes straight into each recipient's Engine.IO send queue
(``put_nowait``): the socket's own writer task, which exists anyway, wakes up
and writes it. Delivery order per socket is unchanged (one FIFO queue); a
socket that is closing or gone is skipped, as ``send_packet`` does; a dead
socket is still found by the ping loop. Emits with a callback (none in
Parley) keep the library's path.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet


class DirectEmitManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's in-memory manager with the direct local emit.

    For Redis, put it after the pub/sub manager in the bases
    (``class M(socketio.AsyncRedisManager, DirectEmitManager)``): the pub/sub
    ``emit`` still publishes to the other nodes, and its local delivery
    (``super().emit`` in ``_handle_emit``) lands here.
    """

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
        sockets = self.server.eio.sockets
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed or socket.closing:
                continue
            for p in packets:
                socket.queue.put_nowait(p)

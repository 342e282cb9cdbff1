"""Parley's socket layer alone: the ``realtime`` hub's fan-out with nothing persisted.

    PEERS_REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python -m bench.peers.parley_fanout \\
        --port 9300 --workers 1

The same ``SocketHub`` as ``parley serve`` (python-socketio ``AsyncServer``,
its Redis manager when ``PEERS_REDIS_URL`` is set, orjson, the event dispatch
with payload validation by ``SendMessageEvent``, emits to member user rooms),
under the same uvicorn (uvloop, httptools, websockets-sansio), but the
``message:send`` handler gives the message its conversation's next seq in
memory instead of writing it to the database, and sockets authenticate with
``{"token": "<user id>|<conversation id>|<M>"}`` instead of a JWT. Members
of conversation C are ``C.0`` … ``C.<M-1>`` (so every worker knows every
roster without a database). No per-user event limit (no Redis round trip per
event), no presence. This is what the fan-out costs in Parley with the
database taken out: the fair peer of the Node server in
``socketio_server.cjs``.
"""

from __future__ import annotations

import argparse
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from config.errors import ParleyError, PermissionDeniedError
from config.settings import RealtimeSettings, RedisSettings
from realtime.control import MemoryControlBus
from realtime.events import MESSAGE_NEW, MESSAGE_SEND
from realtime.hub import Principal, SocketHub
from realtime.metrics import RealtimeMetrics
from server.chats.schemas import MessageOut, SendMessageEvent


def create_app() -> Any:
    redis_url = os.environ.get("PEERS_REDIS_URL") or None
    if os.environ.get("PEERS_STOCK_EMIT"):
        # The library's emit (a task per recipient), for the before/after of
        # realtime/fanout.py in the same run.
        import socketio

        from realtime.fanout import DirectEmitManager

        DirectEmitManager.emit = socketio.AsyncManager.emit  # type: ignore[method-assign]
    seqs: dict[str, int] = {}

    async def verify(token: str) -> Principal:
        user_id, _, rest = token.partition("|")
        if not rest:
            raise ParleyError("bad token", code="unauthenticated", status=401)
        return Principal(user_id=user_id, session_id=user_id)

    hub = SocketHub(
        RealtimeSettings(),
        RedisSettings(url=redis_url, channel="peers-parley"),
        verify,
        RealtimeMetrics(CollectorRegistry()),
        MemoryControlBus(),
    )

    async def send(principal: Principal, payload: SendMessageEvent) -> MessageOut:
        conversation_id = str(payload.conversation_id)
        prefix, _, _k = principal.user_id.rpartition(".")
        if prefix != conversation_id:
            raise PermissionDeniedError("not a member", code="not_a_member")
        size = int(os.environ.get("PEERS_GROUP", "10"))
        seq = seqs.get(conversation_id, 0) + 1
        seqs[conversation_id] = seq
        out = MessageOut.model_construct(
            id=str(uuid.uuid4()),
            conversation_id=conversation_id,
            seq=seq,
            sender_id=principal.user_id,
            client_msg_id=payload.client_msg_id,
            kind=payload.kind,
            body=payload.body,
            created_at=datetime.now(UTC),
            edited_at=None,
            deleted_at=None,
        )
        members = [f"{conversation_id}.{i}" for i in range(size)]
        await hub.emit_to_users(MESSAGE_NEW, out.model_dump(mode="json"), members)
        return out

    hub.on(MESSAGE_SEND, SendMessageEvent, send)

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await hub.start()
        yield
        await hub.close()

    return hub.asgi_app(Starlette(routes=[Route("/readyz", ready)], lifespan=lifespan))


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "bench.peers.parley_fanout:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        lifespan="on",
        log_level="warning",
    )

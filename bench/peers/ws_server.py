"""The Python limit: a bare ``websockets`` server broadcasting to a group, no framework.

    .venv/bin/python -m bench.peers.ws_server --port 9200

It speaks just enough Engine.IO v4 / Socket.IO v5 for the load generator (open,
connect with ``{"token": "<user id>|<conversation id>|..."}``, ``message:send``
with an ack, ``message:new`` events, ping/pong), gives each message its
conversation's next seq in memory (nothing is persisted, no Redis: one
process), and sends the one encoded frame to every socket of the group with
``websockets.broadcast``. What no Socket.IO server in Python can beat on this
machine: the floor of a websocket write per recipient.
"""

from __future__ import annotations

import argparse
import datetime
import uuid
from typing import Any

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

OPEN = orjson.dumps(
    {"sid": "", "upgrades": [], "pingInterval": 600000, "pingTimeout": 60000, "maxPayload": 10**6}
).decode()

groups: dict[str, set[ServerConnection]] = {}
seqs: dict[str, int] = {}


async def handle(ws: ServerConnection) -> None:
    await ws.send("0" + OPEN)
    first = await ws.recv()
    if not isinstance(first, str) or not first.startswith("40"):
        return
    token = str(orjson.loads(first[2:] or "{}").get("token", ""))
    user_id, conversation_id = ([*token.split("|"), "", ""])[:2]
    if not user_id or not conversation_id:
        await ws.send('44{"message":"unauthenticated"}')
        return
    await ws.send('40{"sid":"' + uuid.uuid4().hex + '"}')
    members = groups.setdefault(conversation_id, set())
    members.add(ws)
    try:
        async for frame in ws:
            if not isinstance(frame, str):
                continue
            if frame.startswith("42"):
                bracket = frame.index("[")
                ack_id = frame[2:bracket]
                event, payload = orjson.loads(frame[bracket:])[:2]
                if event != "message:send" or payload.get("conversation_id") != conversation_id:
                    await ws.send(f'43{ack_id}[{{"error":{{"code":"invalid_request"}}}}]')
                    continue
                seq = seqs.get(conversation_id, 0) + 1
                seqs[conversation_id] = seq
                message: dict[str, Any] = {
                    "id": str(uuid.uuid4()),
                    "conversation_id": conversation_id,
                    "seq": seq,
                    "sender_id": user_id,
                    "client_msg_id": payload["client_msg_id"],
                    "kind": payload.get("kind", "text"),
                    "body": payload["body"],
                    "created_at": datetime.datetime.now(datetime.UTC),
                    "edited_at": None,
                    "deleted_at": None,
                }
                encoded = orjson.dumps(message).decode()
                await ws.send(f'43{ack_id}[{{"data":{encoded}}}]')
                broadcast(members, '42["message:new",' + encoded + "]")
            elif frame == "2":
                await ws.send("3")
    finally:
        members.discard(ws)


def ready(connection: ServerConnection, request: Request) -> Response | None:
    """``GET /readyz`` answers 200 (the runner waits for it); anything else is a websocket."""
    if request.path == "/readyz":
        return connection.respond(200, "ok\n")
    return None


async def main(port: int) -> None:
    async with serve(
        handle,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=None,
        process_request=ready,
        max_size=2**20,
    ) as server:
        print(f"listening on {port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9200)
    uvloop.run(main(parser.parse_args().port))

"""Presence across nodes, on real nodes: online, offline, last seen."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from client import ParleyClient
from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess


async def _presence_event(client: ParleyClient, user_id: str, online: bool) -> dict[str, Any]:
    while True:
        name, data = await asyncio.wait_for(client.events.get(), 10)
        if name == "presence:updated" and data["user_id"] == user_id and data["online"] is online:
            return dict(data)


async def test_presence_crosses_nodes(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    """A peer on node 1 sees a user on node 2 come online and go offline, with last seen."""
    node1, node2 = cluster
    alice = await signed_in_client(node1, "alice")
    bob = await signed_in_client(node2, "bob", connect=False)
    try:
        await alice.open_direct(bob.user_id or "", mode="plaintext")
        await bob.connect()
        await _presence_event(alice, bob.user_id or "", True)
        async with httpx.AsyncClient(base_url=node1.url) as http:
            answer = await http.get(
                "/v1/presence",
                params={"user_ids": f"{bob.user_id},{alice.user_id}"},
                headers={"Authorization": f"Bearer {alice.access_token}"},
            )
        states = {u["user_id"]: u for u in answer.json()["users"]}
        assert states[bob.user_id or ""]["online"] and states[alice.user_id or ""]["online"]
        await bob.sio.disconnect()
        gone = await _presence_event(alice, bob.user_id or "", False)
        assert gone["last_seen"] is not None
    finally:
        await alice.close()
        await bob.close()


async def test_rate_limit_answers_with_an_error_ack(sqlite_node: ServerProcess) -> None:
    """Events past the per-user burst get rate_limited acks; the socket stays usable."""
    alice = await signed_in_client(sqlite_node, "alice")
    bob = await signed_in_client(sqlite_node, "bob", connect=False)
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        payload = {"conversation_id": conversation["id"], "state": "start"}
        acks = await asyncio.gather(
            *(alice.sio.call("typing:update", payload, timeout=10) for _ in range(100))
        )
        codes = [a.get("error", {}).get("code") for a in acks]
        assert codes.count("rate_limited") >= 30, codes
        await asyncio.sleep(1.5)
        ack = await alice.send_text(conversation["id"], "after the burst")
        assert ack["seq"] == 1
    finally:
        await alice.close()
        await bob.close()

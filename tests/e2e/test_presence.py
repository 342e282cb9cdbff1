"""Presence across nodes, on real nodes: online, offline, last seen."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from client import ParleyApiError, ParleyClient
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
        await bob.open_direct(alice.user_id or "", mode="plaintext")  # bob takes part
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


async def test_unknown_events_count_against_the_event_limit(sqlite_node: ServerProcess) -> None:
    """A flood of made-up event names is refused like a flood of real events."""
    eve = await signed_in_client(sqlite_node, "eve")
    try:
        acks = await asyncio.gather(
            *(eve.sio.call("no:such-event", {}, timeout=10) for _ in range(100))
        )
        codes = [a["error"]["code"] for a in acks]
        assert codes.count("rate_limited") >= 30, codes
        assert set(codes) == {"unknown_event", "rate_limited"}
    finally:
        await eve.close()


NEVER_SEEN = {"online": False, "last_seen": None}


async def test_presence_is_for_people_who_share_a_conversation_and_no_block(
    sqlite_node: ServerProcess,
) -> None:
    """Strangers and either side of a block read each other as never seen, over HTTP and in
    ``presence:updated``; people who share a conversation see each other."""
    ana, ben, cy, dee = [
        await signed_in_client(sqlite_node, name) for name in ("ana", "ben", "cy", "dee")
    ]
    a, b, c, d = (x.user_id or "" for x in (ana, ben, cy, dee))
    try:
        await ben.open_direct(a, mode="plaintext")  # each opens one: both take part
        await ana.open_direct(b, mode="encrypted")
        await ben.open_direct(d, mode="plaintext")
        await dee.open_direct(b, mode="encrypted")
        nobody = "00000000-0000-4000-8000-000000000000"

        seen_by_ana = await ana.presence([b, c, a, nobody])
        assert seen_by_ana[b]["online"] is True and seen_by_ana[a]["online"] is True
        assert seen_by_ana[c] == NEVER_SEEN, "cy shares no conversation with ana"
        assert seen_by_ana[nobody] == NEVER_SEEN
        assert await cy.presence([a, b]) == {a: NEVER_SEEN, b: NEVER_SEEN}
        # Opening a conversation at someone, or adding them to a group, shows nothing of them
        # until they take part in it.
        at_ana = await cy.open_direct(a, mode="plaintext")
        await cy.create_group("watchers", member_ids=[a, b], mode="plaintext")
        assert await cy.presence([a, b]) == {a: NEVER_SEEN, b: NEVER_SEEN}
        await ana.send_text(at_ana["id"], "hello, who are you?")
        assert (await cy.presence([a]))[a]["online"] is True, "ana answered"
        assert await cy.presence([b]) == {b: NEVER_SEEN}
        # Upper-case ids name the same users.
        assert (await ana.presence([b.upper()]))[b]["online"] is True

        await ben.block(a)
        assert await ana.presence([b]) == {b: NEVER_SEEN}, "ben blocked ana"
        assert await ben.presence([a]) == {a: NEVER_SEEN}, "ana was blocked by ben"
        assert (await ben.presence([d]))[d]["online"] is True

        while not ana.events.empty():
            ana.events.get_nowait()
        await ben.sio.disconnect()
        gone = await _presence_event(dee, b, False)
        assert gone["last_seen"] is not None
        await asyncio.sleep(0.5)
        told_ana = [
            data
            for name, data in _drain(ana)
            if name == "presence:updated" and data["user_id"] == b
        ]
        assert told_ana == [], "presence:updated does not cross a block"

        await ben.unblock(a)
        assert (await ana.presence([b]))[b]["last_seen"] == pytest.approx(gone["last_seen"], abs=1)
    finally:
        for client in (ana, ben, cy, dee):
            await client.close()


def _drain(client: ParleyClient) -> list[tuple[str, Any]]:
    items = []
    while not client.events.empty():
        items.append(client.events.get_nowait())
    return items


async def test_presence_refuses_bad_lists(sqlite_node: ServerProcess) -> None:
    """A clear 422 for no ids, over 100, or one that is not an id."""
    ana = await signed_in_client(sqlite_node, "ana", connect=False)
    try:
        many = ",".join(str(uuid.uuid4()) for _ in range(101))
        for user_ids, fragment in (("", "1 to 100"), (",,", "1 to 100"), (many, ""), ("x", "id")):
            with pytest.raises(ParleyApiError) as raised:
                await ana.presence(user_ids.split(","))
            assert raised.value.status == 422, user_ids
            assert fragment in raised.value.message
    finally:
        await ana.close()

"""Two nodes sharing PostgreSQL and Redis: a message crosses from one to the other."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess


async def remote_deliveries(node: ServerProcess) -> tuple[float, float]:
    """``parley_fanout_remote_seconds``: how many emits came from other nodes, and their
    total seconds from emit to delivery."""
    async with httpx.AsyncClient(base_url=node.url) as http:
        text = (await http.get("/metrics")).text
    values = {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
        if name.startswith("parley_fanout_remote_seconds_")
    }
    return values["parley_fanout_remote_seconds_count"], values["parley_fanout_remote_seconds_sum"]


async def test_message_crosses_nodes_and_history_shows_it_once(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """A on node 1 sends; B on node 2 receives message:new; history on both nodes has it once."""
    node1, node2 = cluster
    alice = await signed_in_client(node1, "alice")
    bob = await signed_in_client(node2, "bob")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        before = await remote_deliveries(node2)
        ack = await alice.send_text(conversation["id"], "across the cluster")
        received = await bob.next_message(timeout=10)
        assert received["id"] == ack["id"] and received["body"]["text"] == "across the cluster"
        count, seconds = await remote_deliveries(node2)
        assert count > before[0], "node 2 timed the emit that came from node 1"
        assert 0 <= seconds - before[1] < 5 * (count - before[0])

        reply = await bob.send_text(conversation["id"], "and back")
        assert (await alice.next_message())["id"] == ack["id"]  # alice's own echo first
        assert (await alice.next_message())["id"] == reply["id"]

        for node in (node1, node2):
            async with httpx.AsyncClient(base_url=node.url) as http:
                page = (
                    await http.get(
                        f"/v1/conversations/{conversation['id']}/messages",
                        headers={"Authorization": f"Bearer {alice.access_token}"},
                    )
                ).json()
            assert [m["id"] for m in page["messages"]] == [ack["id"], reply["id"]], node.name
    finally:
        await alice.close()
        await bob.close()


async def test_tokens_and_codes_work_on_either_node(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """A code from node 1 verifies on node 2 (shared kv); tokens from one work on the other."""
    from client import ParleyClient
    from tests.support.phones import fresh_phone

    node1, node2 = cluster
    starter = ParleyClient(node1.url)
    finisher = ParleyClient(node2.url)
    try:
        start = await starter.start_phone_sign_in(fresh_phone())
        code = await asyncio.to_thread(node1.next_sms_code, start["phone"])
        tokens = await finisher.verify_phone(start["request_id"], code, nickname="roamer")
        starter._store_tokens(tokens)
        assert (await starter.me())["nickname"] == "roamer"
        await starter.connect()
        assert starter.connected
    finally:
        await starter.close()
        await finisher.close()


async def test_concurrent_senders_on_two_nodes_get_gap_free_seqs(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """40 messages sent at once from both nodes take seqs 1..40 with no gap or duplicate."""
    node1, node2 = cluster
    alice = await signed_in_client(node1, "alice")
    bob = await signed_in_client(node2, "bob")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        sends = [alice.send_text(conversation["id"], f"a{i}") for i in range(20)]
        sends += [bob.send_text(conversation["id"], f"b{i}") for i in range(20)]
        acks = await asyncio.gather(*sends)
        assert sorted(a["seq"] for a in acks) == list(range(1, 41))
        seen: set[str] = set()
        while len(seen) < 40:
            seen.add((await bob.next_message(timeout=10))["id"])
        assert seen == {a["id"] for a in acks}
    finally:
        await alice.close()
        await bob.close()

"""End-to-end encryption across nodes: every device decrypts, the server never sees plaintext."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import asyncpg
import pytest
from eth_account import Account

from client import ParleyApiError, ParleyClient
from tests.support.phones import fresh_phone
from tests.support.server import ServerProcess


async def _device(node: ServerProcess, wallet: Any, name: str) -> ParleyClient:
    client = ParleyClient(node.url, device_name=name)
    await client.sign_in_with_ethereum(wallet)
    await client.setup_device(name)
    await client.connect()
    return client


async def _drain(client: ParleyClient, count: int, kind: str = "envelope") -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        message = await client.next_message(timeout=15)
        if message["kind"] == kind:
            got.append(message)
    return got


async def test_group_of_five_with_two_devices_each_across_nodes(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """10 devices on 2 nodes exchange envelopes; all decrypt all; no plaintext stored or logged."""
    node1, node2 = cluster
    wallets = [Account.create() for _ in range(5)]
    devices: list[list[ParleyClient]] = []
    try:
        for i, wallet in enumerate(wallets):
            devices.append(
                [await _device(node1, wallet, f"u{i}-a"), await _device(node2, wallet, f"u{i}-b")]
            )
        owner = devices[0][0]
        group = await owner.create_group(
            "five", [d[0].user_id or "" for d in devices[1:]], mode="encrypted"
        )
        assert group["mode"] == "encrypted" and len(group["members"]) == 5
        for pair in devices:
            for device in pair:
                assert (await _drain(device, 1, kind="system"))[0]["body"]["event"] == "created"

        marker = f"marker-{uuid.uuid4().hex}"
        acks = []
        for i, pair in enumerate(devices):
            sender = pair[i % 2]  # senders on both nodes
            acks.append(await sender.send_encrypted(group["id"], {"text": f"{marker}-{i}"}))
        assert sorted(a["seq"] for a in acks) == [2, 3, 4, 5, 6]

        for pair in devices:
            for device in pair:
                received = await _drain(device, 5)
                texts = sorted([(await device.open_message(m))["text"] for m in received])
                assert texts == sorted(f"{marker}-{i}" for i in range(5)), device.device_name

        conn = await asyncpg.connect(node1.env["PARLEY_DATABASE_URL"])
        try:
            rows = await conn.fetch("SELECT body::text AS body FROM messages")
            dump = "\n".join(r["body"] for r in rows)
        finally:
            await conn.close()
        assert marker not in dump, "plaintext reached the database"
        assert len(rows) >= 6
        for node in (node1, node2):
            assert marker not in node.log_text(), f"plaintext reached the log of {node.name}"
    finally:
        for pair in devices:
            for device in pair:
                await device.close()


@pytest.fixture
async def pair(sqlite_node: ServerProcess) -> Any:
    """Two users with one device each and an encrypted direct conversation."""
    alice = await _device(sqlite_node, Account.create(), "alice")
    bob = await _device(sqlite_node, Account.create(), "bob")
    conversation = await alice.open_direct(bob.user_id or "")
    yield alice, bob, conversation
    await alice.close()
    await bob.close()


def _flip(text: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw[0] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def _envelope(
    alice: ParleyClient, conversation: dict[str, Any], client_msg_id: str
) -> dict[str, Any]:
    """A correct envelope from alice, captured instead of sent."""
    captured: dict[str, Any] = {}

    async def capture(event: str, payload: Any, *, timeout: float = 10.0) -> Any:
        captured.update(payload)
        return {"id": "x"}

    original = alice.emit
    alice.emit = capture  # type: ignore[method-assign]
    try:
        await alice.send_encrypted(
            conversation["id"], {"text": "secret"}, client_msg_id=client_msg_id
        )
    finally:
        alice.emit = original  # type: ignore[method-assign]
    return captured


async def test_bad_envelopes_are_refused_and_nothing_is_stored(pair: Any) -> None:
    """Tampered, mis-signed, mis-addressed or mismatched envelopes: error acks, nothing stored."""
    alice, bob, conversation = pair
    good = await _envelope(alice, conversation, "good-1")
    cases: dict[str, tuple[dict[str, Any], str]] = {}

    tampered = {**good, "body": {**good["body"], "ciphertext": _flip(good["body"]["ciphertext"])}}
    cases["tampered ciphertext"] = (tampered, "invalid_signature")
    resigned = {**good, "body": {**good["body"], "signature": _flip(good["body"]["signature"])}}
    cases["wrong signature"] = (resigned, "invalid_signature")
    stranger = str(uuid.uuid4())
    extra = [*good["body"]["recipients"], {**good["body"]["recipients"][0], "device_id": stranger}]
    cases["device outside the conversation"] = (
        {
            **good,
            "body": {**good["body"], "recipients": sorted(extra, key=lambda r: r["device_id"])},
        },
        "invalid_signature",
    )
    cases["other client_msg_id"] = ({**good, "client_msg_id": "other-id"}, "invalid_envelope")
    cases["not an envelope"] = ({**good, "body": {"text": "plain"}}, "invalid_envelope")
    cases["wrong type"] = (
        {**good, "body": {**good["body"], "recipients": "all"}},
        "invalid_envelope",
    )
    for label, (payload, code) in cases.items():
        with pytest.raises(ParleyApiError) as error:
            await alice.emit("message:send", payload)
        assert error.value.code == code, (label, error.value)
    text = {"conversation_id": conversation["id"], "client_msg_id": "t", "body": {"text": "plain"}}
    with pytest.raises(ParleyApiError) as wrong_mode:
        await alice.emit("message:send", text)
    assert wrong_mode.value.code == "wrong_mode"
    assert (await bob.history(conversation["id"]))["messages"] == []

    ack = await alice.emit("message:send", good)
    assert ack["seq"] == 1
    message = await _drain(bob, 1)
    assert (await bob.open_message(message[0]))["text"] == "secret"


async def test_sender_must_address_every_member_device(pair: Any) -> None:
    """An envelope missing a member's new device is refused; the SDK refetches keys and succeeds."""
    alice, bob, conversation = pair
    stale = await _envelope(alice, conversation, "stale-1")  # made while bob has one device
    bob2 = ParleyClient(bob.base_url, device_name="bob-2")
    bob2._store_tokens(await bob.refresh())  # a second device of bob's, same account
    try:
        await bob2.setup_device("bob-2")
        data = await alice.next_event("keys:changed", 5)
        assert data == {"user_id": bob.user_id}, "alice is told"
        with pytest.raises(ParleyApiError) as mismatch:
            await alice.emit("message:send", stale)
        assert mismatch.value.code == "recipient_mismatch"
        assert bob2.device is not None and bob2.device.device_id in mismatch.value.message
        ack = await alice.send_encrypted(conversation["id"], {"text": "to both"})
        message = (await _drain(bob, 1))[0]
        assert message["id"] == ack["id"]
        await bob2.connect()
        page = await bob2.history(conversation["id"])
        assert (await bob2.open_message(page["messages"][-1]))["text"] == "to both"
    finally:
        await bob2.close()


async def test_outsider_cannot_read_or_send(pair: Any, sqlite_node: ServerProcess) -> None:
    """A non-member cannot send an envelope, read history or sync the conversation."""
    alice, _bob, conversation = pair
    eve = await _device(sqlite_node, Account.create(), "eve")
    try:
        await alice.send_encrypted(conversation["id"], {"text": "not for eve"})
        with pytest.raises(ParleyApiError) as send:
            await eve.send_encrypted(conversation["id"], {"text": "let me in"})
        assert send.value.code == "conversation_not_found"
        with pytest.raises(ParleyApiError) as read:
            await eve.history(conversation["id"])
        assert read.value.status == 404
        assert await eve.sync({}) == [], "eve's sync sees only her own conversations"
        with pytest.raises(asyncio.TimeoutError):
            await eve.next_message(timeout=0.5)
    finally:
        await eve.close()


async def test_device_changes_reach_the_envelope_check_on_every_node(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """Nodes keep each conversation's device set in memory; a device registered or
    revoked through one node changes what the other accepts at once, not after a TTL."""
    node1, node2 = cluster
    alice = await _device(node1, Account.create(), "alice")
    bob = await _device(node1, Account.create(), "bob")
    bob2 = ParleyClient(node2.url, device_name="bob-2")
    try:
        conversation = await alice.open_direct(bob.user_id or "")
        # A send through node 1 puts the conversation's device set in its memory.
        await alice.send_encrypted(conversation["id"], {"text": "one device"})
        assert (await _drain(bob, 1))[0]["kind"] == "envelope"
        stale = await _envelope(alice, conversation, "made-before-bob-2")

        bob2._store_tokens(await bob.refresh())
        await bob2.setup_device("bob-2")  # registered through node 2
        assert await alice.next_event("keys:changed", 5) == {"user_id": bob.user_id}
        with pytest.raises(ParleyApiError) as mismatch:
            await alice.emit("message:send", stale)
        assert mismatch.value.code == "recipient_mismatch"
        assert bob2.device is not None and bob2.device.device_id in mismatch.value.message

        alice.forget_keys()
        both = await _envelope(alice, conversation, "made-for-bob-2")
        await bob2.connect()
        signed_by_bob2 = await _envelope(bob2, conversation, "signed-by-bob-2")
        await bob2.request("DELETE", f"/v1/devices/{bob2.device.device_id}")  # via node 2
        assert await alice.next_event("keys:changed", 5) == {"user_id": bob.user_id}
        with pytest.raises(ParleyApiError) as extra:
            await alice.emit("message:send", both)
        assert extra.value.code == "recipient_mismatch"
        assert "not in the conversation" in extra.value.message
        with pytest.raises(ParleyApiError) as revoked:
            await bob.emit("message:send", {**signed_by_bob2})  # bob's session, node 1
        assert revoked.value.code == "invalid_envelope"
        assert "not an active device of yours" in revoked.value.message
    finally:
        await alice.close()
        await bob.close()
        await bob2.close()


async def test_a_resend_gets_its_first_ack_after_the_devices_changed(pair: Any) -> None:
    """An envelope stored, then resent after the recipient added a device (so the
    check would now refuse it): the resend is answered with the stored message,
    while an envelope of that age never stored is refused."""
    alice, bob, conversation = pair
    envelope = await _envelope(alice, conversation, "resent-after-a-new-device")
    never_sent = await _envelope(alice, conversation, "made-then-but-never-sent")
    first = await alice.emit("message:send", envelope)
    bob2 = ParleyClient(bob.base_url, device_name="bob-2")
    bob2._store_tokens(await bob.refresh())
    try:
        await bob2.setup_device("bob-2")
        assert await alice.next_event("keys:changed", 5) == {"user_id": bob.user_id}
        assert await alice.emit("message:send", envelope) == first
        with pytest.raises(ParleyApiError) as refused:
            await alice.emit("message:send", never_sent)
        assert refused.value.code == "recipient_mismatch"
        page = await bob.history(conversation["id"])
        assert [m["client_msg_id"] for m in page["messages"]].count(first["client_msg_id"]) == 1
    finally:
        await bob2.close()


async def test_an_envelope_resent_unchanged_is_stored_and_delivered_once(pair: Any) -> None:
    """A resend that passes the check again is answered by the store: the first ack,
    no second delivery, one copy in history."""
    alice, bob, conversation = pair
    envelope = await _envelope(alice, conversation, "sent-twice")
    first = await alice.emit("message:send", envelope)
    assert await alice.emit("message:send", envelope) == first
    delivered = await _drain(bob, 1)
    assert delivered[0]["id"] == first["id"]
    with pytest.raises(TimeoutError):
        await bob.next_message(timeout=1)
    page = await bob.history(conversation["id"])
    assert [m["client_msg_id"] for m in page["messages"]].count("sent-twice") == 1


async def test_the_readme_example_runs_as_written(sqlite_node: ServerProcess) -> None:
    """README "Try it": phone sign-in, a default (encrypted) direct chat the sender reads back
    through its own device, and a plaintext one."""

    async def phone_user(nickname: str) -> ParleyClient:
        client = ParleyClient(sqlite_node.url)
        start = await client.start_phone_sign_in(fresh_phone())
        code = await asyncio.to_thread(sqlite_node.next_sms_code, start["phone"])
        await client.verify_phone(start["request_id"], code, nickname=nickname)
        await client.connect()
        await client.setup_device()
        return client

    ana, ben = await phone_user("ana"), await phone_user("ben")
    try:
        secret = await ana.open_direct(ben.user_id or "")
        assert secret["mode"] == "encrypted"
        ack = await ana.send_encrypted(secret["id"], {"text": "hello"})
        message = await ana.next_message()
        assert message["id"] == ack["id"]
        assert await ana.open_message(message) == {"text": "hello"}
        assert await ben.open_message(await ben.next_message()) == {"text": "hello"}

        plain = await ana.open_direct(ben.user_id or "", mode="plaintext")
        ack = await ana.send_text(plain["id"], "hello")
        assert ack["seq"] == 1
        assert (await ben.next_message())["body"] == {"text": "hello"}
    finally:
        await ana.close()
        await ben.close()

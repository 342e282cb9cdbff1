"""One message end to end on a real node: sign in, connect, send, receive, history."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from client import ParleyApiError
from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess


async def test_two_users_exchange_a_message(sqlite_node: ServerProcess) -> None:
    """A's message reaches B's socket and A's own socket, is acked with seq, and is in history."""
    alice = await signed_in_client(sqlite_node, "alice")
    bob = await signed_in_client(sqlite_node, "bob")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        assert {m["user_id"] for m in conversation["members"]} == {alice.user_id, bob.user_id}
        again = await bob.open_direct(alice.user_id or "", mode="plaintext")
        assert again["id"] == conversation["id"], "one direct conversation per pair"

        ack = await alice.send_text(conversation["id"], "hello bob")
        assert ack["seq"] == 1 and ack["sender_id"] == alice.user_id

        received = await bob.next_message()
        assert received["id"] == ack["id"]
        assert received["body"] == {"text": "hello bob"}
        echoed = await alice.next_message()
        assert echoed["id"] == ack["id"], "the sender's other sockets see it too"

        reply = await bob.send_text(conversation["id"], "hi alice")
        assert reply["seq"] == 2
        assert (await alice.next_message())["id"] == reply["id"]

        page = await bob.history(conversation["id"])
        assert [m["seq"] for m in page["messages"]] == [1, 2]
        assert [m["body"]["text"] for m in page["messages"]] == ["hello bob", "hi alice"]
    finally:
        await alice.close()
        await bob.close()


async def test_resend_with_same_client_msg_id_is_not_delivered_twice(
    sqlite_node: ServerProcess,
) -> None:
    """A resend returns the first ack and no second message:new, and history holds one copy."""
    alice = await signed_in_client(sqlite_node, "alice")
    bob = await signed_in_client(sqlite_node, "bob")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        first = await alice.send_text(conversation["id"], "once", client_msg_id="m-1")
        second = await alice.send_text(conversation["id"], "once", client_msg_id="m-1")
        assert first == second
        assert (await bob.next_message())["id"] == first["id"]
        with pytest.raises(asyncio.TimeoutError):
            await bob.next_message(timeout=0.5)
        page = await bob.history(conversation["id"])
        assert [m["client_msg_id"] for m in page["messages"]] == ["m-1"]
    finally:
        await alice.close()
        await bob.close()


async def test_history_pages_both_ways(sqlite_node: ServerProcess) -> None:
    """before_seq pages backwards, after_seq forwards, and has_more says when to stop."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    bob = await signed_in_client(sqlite_node, "bob", connect=False)
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        for i in range(7):
            await alice.request(
                "POST",
                f"/v1/conversations/{conversation['id']}/messages",
                json={"client_msg_id": f"h{i}", "body": {"text": f"m{i}"}},
            )
        newest = await bob.history(conversation["id"], limit=3)
        assert [m["seq"] for m in newest["messages"]] == [5, 6, 7] and newest["has_more"]
        older = await bob.history(conversation["id"], before_seq=5, limit=3)
        assert [m["seq"] for m in older["messages"]] == [2, 3, 4] and older["has_more"]
        oldest = await bob.history(conversation["id"], before_seq=2, limit=3)
        assert [m["seq"] for m in oldest["messages"]] == [1] and not oldest["has_more"]
        forward = await bob.history(conversation["id"], after_seq=4, limit=2)
        assert [m["seq"] for m in forward["messages"]] == [5, 6] and forward["has_more"]
        tail = await bob.history(conversation["id"], after_seq=6, limit=2)
        assert [m["seq"] for m in tail["messages"]] == [7] and not tail["has_more"]
        listed = await bob.conversations()
        assert conversation["id"] in [c["id"] for c in listed["conversations"]]
    finally:
        await alice.close()
        await bob.close()


async def test_outsider_can_neither_send_nor_read(sqlite_node: ServerProcess) -> None:
    """A non-member gets conversation_not_found on send (socket and HTTP) and on history."""
    alice = await signed_in_client(sqlite_node, "alice")
    bob = await signed_in_client(sqlite_node, "bob")
    eve = await signed_in_client(sqlite_node, "eve")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        with pytest.raises(ParleyApiError) as socket_error:
            await eve.send_text(conversation["id"], "let me in")
        assert socket_error.value.code == "conversation_not_found"
        with pytest.raises(ParleyApiError) as http_error:
            await eve.history(conversation["id"])
        assert (http_error.value.status, http_error.value.code) == (404, "conversation_not_found")
        with pytest.raises(ParleyApiError) as get_error:
            await eve.request("GET", f"/v1/conversations/{conversation['id']}")
        assert get_error.value.status == 404
        # Nothing was stored and the members' sockets still work.
        ack = await alice.send_text(conversation["id"], "still here")
        assert ack["seq"] == 1
        assert (await bob.next_message())["id"] == ack["id"]
        with pytest.raises(asyncio.TimeoutError):
            await eve.next_message(timeout=0.3)
    finally:
        for c in (alice, bob, eve):
            await c.close()


async def test_bad_socket_payloads_get_error_acks_and_hurt_nobody(
    sqlite_node: ServerProcess,
) -> None:
    """Wrong types, unknown fields, oversize text, garbage: error acks; others keep chatting."""
    alice = await signed_in_client(sqlite_node, "alice")
    bob = await signed_in_client(sqlite_node, "bob")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        cid = conversation["id"]
        good = {"conversation_id": cid, "client_msg_id": "x", "body": {"text": "hi"}}
        cases = {
            "not an object": ("hello", "invalid_request"),
            "a list": ([1, 2], "invalid_request"),
            "unknown field": ({**good, "admin": True}, "invalid_request"),
            "wrong type": ({**good, "body": {"text": 5}}, "invalid_request"),
            "bad conversation id": ({**good, "conversation_id": "nope"}, "invalid_request"),
            "unknown conversation": (
                {**good, "conversation_id": str(uuid.uuid4())},
                "conversation_not_found",
            ),
            "empty text": ({**good, "body": {"text": ""}}, "invalid_request"),
            "oversize text": ({**good, "body": {"text": "x" * 5000}}, "message_too_large"),
            "bad client_msg_id": ({**good, "client_msg_id": "has space"}, "invalid_request"),
            "unknown kind": ({**good, "kind": "video"}, "invalid_request"),
        }
        for label, (payload, code) in cases.items():
            with pytest.raises(ParleyApiError) as error:
                await alice.emit("message:send", payload)
            assert error.value.code == code, label
            assert error.value.message, label
        ack = await bob.send_text(cid, "unaffected")
        assert ack["seq"] == 1, "no bad payload consumed a seq"
        assert (await alice.next_message())["id"] == ack["id"]
        assert alice.connected and bob.connected
    finally:
        await alice.close()
        await bob.close()


async def test_oversize_socket_frame_drops_only_that_client(sqlite_node: ServerProcess) -> None:
    """A frame over the size limit closes the sender's socket; other users are untouched."""
    alice = await signed_in_client(sqlite_node, "alice")
    bob = await signed_in_client(sqlite_node, "bob")
    mallory = await signed_in_client(sqlite_node, "mallory")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        huge = {
            "conversation_id": conversation["id"],
            "client_msg_id": "big",
            "body": {"text": "x" * 400_000},
        }
        with pytest.raises((ParleyApiError, TimeoutError, asyncio.TimeoutError, Exception)):
            await mallory.emit("message:send", huge, timeout=3)
        ack = await alice.send_text(conversation["id"], "still fine")
        assert (await bob.next_message())["id"] == ack["id"]
    finally:
        for c in (alice, bob, mallory):
            await c.close()


async def test_socket_connect_refused_with_reason(sqlite_node: ServerProcess) -> None:
    """No token, a garbage token and a tampered token are refused with a code saying why."""
    from client import ParleyClient

    client = ParleyClient(sqlite_node.url)
    try:
        for token, code in ((None, "unauthenticated"), ("garbage", "invalid_token")):
            client.access_token = token
            client.access_expires_at = 1e12
            client.connect_errors.clear()
            if token is None:
                client.access_token = None
                client.refresh_token = None
            try:
                await client.sio.connect(
                    sqlite_node.url,
                    auth={"token": token} if token else {},
                    transports=["websocket"],
                    wait_timeout=5,
                    retry=False,
                )
                raise AssertionError("connection should have been refused")
            except Exception:
                pass
            detail = client.connect_errors[-1]
            data = detail.get("data", detail) if isinstance(detail, dict) else {}
            assert data.get("code") == code, detail
    finally:
        await client.close()

    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        header, payload, signature = (alice.access_token or "").split(".")
        alice.access_token = f"{header}.{payload}.{signature[:-4]}AAAA"
        alice.access_expires_at = 1e12
        with pytest.raises(ParleyApiError) as error:
            await alice.connect(timeout=5)
        assert error.value.code == "invalid_token"
    finally:
        await alice.close()


async def test_http_bad_input_is_a_clear_4xx(sqlite_node: ServerProcess) -> None:
    """Malformed JSON, unknown fields, oversize bodies, bad phones, wrong OTPs and bad tokens."""
    async with httpx.AsyncClient(base_url=sqlite_node.url) as http:

        async def expect(method: str, path: str, status: int, code: str, **kw: object) -> None:
            response = await http.request(method, path, **kw)  # type: ignore[arg-type]
            assert response.status_code == status, (path, response.text)
            body = response.json()
            assert body["error"]["code"] == code, body
            assert body["error"]["message"]

        json_headers = {"content-type": "application/json"}
        await expect(
            "POST",
            "/v1/auth/phone/start",
            400,
            "malformed_json",
            content=b"{bad",
            headers=json_headers,
        )
        await expect(
            "POST",
            "/v1/auth/phone/start",
            422,
            "invalid_request",
            json={"phone": "+14155552671", "x": 1},
        )
        await expect("POST", "/v1/auth/phone/start", 422, "invalid_request", json={})
        await expect("POST", "/v1/auth/phone/start", 422, "invalid_phone", json={"phone": "12345"})
        await expect(
            "POST", "/v1/auth/phone/start", 422, "invalid_phone", json={"phone": "not a phone"}
        )
        await expect(
            "POST", "/v1/auth/phone/start", 422, "invalid_request", json={"phone": "+1" * 40}
        )
        await expect(
            "POST",
            "/v1/auth/phone/start",
            413,
            "payload_too_large",
            content=b"{" + b" " * 300_000 + b"}",
            headers=json_headers,
        )
        await expect(
            "POST",
            "/v1/auth/phone/verify",
            401,
            "invalid_code",
            json={"request_id": "A" * 24, "code": "123456"},
        )
        await expect(
            "POST",
            "/v1/auth/phone/verify",
            422,
            "invalid_request",
            json={"request_id": "A" * 24, "code": "12ab56"},
        )
        await expect("GET", "/v1/me", 401, "unauthenticated")
        await expect(
            "GET", "/v1/me", 401, "invalid_token", headers={"Authorization": "Bearer abc.def.ghi"}
        )
        await expect(
            "POST",
            "/v1/auth/refresh",
            401,
            "invalid_refresh_token",
            json={"refresh_token": "x" * 43},
        )
        await expect("GET", "/v1/nowhere", 404, "not_found")
        await expect("DELETE", "/healthz", 405, "method_not_allowed")
        # Allow lists every method of the path, not only the first route's.
        await expect("PUT", "/v1/me/profile", 405, "method_not_allowed")
        wrong = await http.put("/v1/me/profile")
        assert wrong.headers["allow"] == "GET, PATCH"
        assert (await http.delete("/healthz")).headers["allow"] == "GET"


async def test_wrong_code_attempts_are_limited(sqlite_node: ServerProcess) -> None:
    """Five wrong codes burn the request: even the right code fails afterwards."""
    from client import ParleyClient
    from tests.support.phones import fresh_phone

    client = ParleyClient(sqlite_node.url)
    try:
        start = await client.start_phone_sign_in(fresh_phone())
        code = await asyncio.to_thread(sqlite_node.next_sms_code, start["phone"])
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        codes = []
        for _ in range(5):
            with pytest.raises(ParleyApiError) as error:
                await client.verify_phone(start["request_id"], wrong)
            codes.append(error.value.code)
        assert codes[:4] == ["invalid_code"] * 4 and codes[4] == "otp_attempts_exceeded"
        with pytest.raises(ParleyApiError):
            await client.verify_phone(start["request_id"], code)
    finally:
        await client.close()


async def test_code_is_single_use_and_nickname_is_overwritten(sqlite_node: ServerProcess) -> None:
    """A code signs in once; signing in again with a new nickname makes a new session, same user."""
    from client import ParleyClient
    from tests.support.phones import fresh_phone

    phone = fresh_phone()
    first = ParleyClient(sqlite_node.url)
    second = ParleyClient(sqlite_node.url)
    try:
        start = await first.start_phone_sign_in(phone)
        code = await asyncio.to_thread(sqlite_node.next_sms_code, start["phone"])
        tokens = await first.verify_phone(start["request_id"], code, nickname="ana")
        assert tokens["new_user"] is True
        with pytest.raises(ParleyApiError):
            await second.verify_phone(start["request_id"], code)
        # resend cool-down applies to the same number
        with pytest.raises(ParleyApiError) as cooldown:
            await second.start_phone_sign_in(phone)
        assert cooldown.value.status == 429
    finally:
        await first.close()
        await second.close()
    me = await _me_after_second_sign_in(sqlite_node, phone, tokens["user_id"])
    assert me["nickname"] == "anna" and me["phones"] == [phone]


async def _me_after_second_sign_in(
    node: ServerProcess, phone: str, user_id: str
) -> dict[str, object]:
    """Sign in again once the (2 s, on the test node) resend cool-down allows."""
    from client import ParleyClient

    client = ParleyClient(node.url)
    try:
        for _ in range(20):
            try:
                start = await client.start_phone_sign_in(phone)
                break
            except ParleyApiError as exc:
                assert exc.code == "otp_cooldown"
                await asyncio.sleep(0.5)
        code = await asyncio.to_thread(node.next_sms_code, start["phone"])
        tokens = await client.verify_phone(start["request_id"], code, nickname="anna")
        assert tokens["user_id"] == user_id and tokens["new_user"] is False
        return await client.me()
    finally:
        await client.close()


async def test_refresh_rotates_and_reuse_revokes(sqlite_node: ServerProcess) -> None:
    """Refresh returns a new pair; replaying the old refresh token revokes the session."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        old_refresh = alice.refresh_token
        await alice.refresh()
        assert alice.refresh_token != old_refresh
        assert (await alice.me())["id"] == alice.user_id
        alice_new_refresh = alice.refresh_token
        alice.refresh_token = old_refresh
        with pytest.raises(ParleyApiError) as reuse:
            await alice.refresh()
        assert reuse.value.code == "refresh_token_reused"
        alice.refresh_token = alice_new_refresh
        with pytest.raises(ParleyApiError) as after:
            await alice.refresh()
        assert after.value.code == "invalid_refresh_token"
        with pytest.raises(ParleyApiError) as socket_refused:
            await alice.connect(timeout=5)
        assert socket_refused.value.code == "session_revoked"
    finally:
        await alice.close()

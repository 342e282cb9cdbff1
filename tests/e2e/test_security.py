"""Regression tests for attacks on sign-in, sessions and the socket layer."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import httpx
import pytest

from client import ParleyApiError, ParleyClient
from tests.e2e.conftest import BASE_ENV, embedded_env
from tests.support.clients import signed_in_client
from tests.support.phones import fresh_phone
from tests.support.server import ServerProcess


async def test_request_id_cannot_address_other_kv_keys(sqlite_node: ServerProcess) -> None:
    """request_ids shaped like other kv keys (counters, cool-downs) are refused; the limit holds."""
    client = ParleyClient(sqlite_node.url)
    try:
        phone = fresh_phone()
        start = await client.start_phone_sign_in(phone)
        code = await asyncio.to_thread(sqlite_node.next_sms_code, start["phone"])
        async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
            for forged in (f"{start['request_id']}:attempts", f"cooldown:{phone}", "x" * 23 + ":"):
                response = await http.post(
                    "/v1/auth/phone/verify", json={"request_id": forged, "code": "000000"}
                )
                assert response.status_code == 422, response.text
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        for _ in range(5):
            with pytest.raises(ParleyApiError):
                await client.verify_phone(start["request_id"], wrong)
        with pytest.raises(ParleyApiError):
            await client.verify_phone(start["request_id"], code)
    finally:
        await client.close()


async def test_concurrent_right_codes_sign_in_once(sqlite_node: ServerProcess) -> None:
    """Ten simultaneous verifies with the right code: exactly one session is created."""
    clients = [ParleyClient(sqlite_node.url) for _ in range(10)]
    try:
        start = await clients[0].start_phone_sign_in(fresh_phone())
        code = await asyncio.to_thread(sqlite_node.next_sms_code, start["phone"])
        results = await asyncio.gather(
            *(c.verify_phone(start["request_id"], code) for c in clients), return_exceptions=True
        )
        assert sum(isinstance(r, dict) for r in results) == 1, results
        assert all(isinstance(r, (dict, ParleyApiError)) for r in results)
    finally:
        for c in clients:
            await c.close()


@pytest.mark.parametrize("field", ["nickname", "device_name"])
async def test_nul_in_names_is_a_4xx_and_keeps_the_code(
    sqlite_node: ServerProcess, field: str
) -> None:
    """A NUL in a name is refused with 422 before anything is written; the code still works."""
    client = ParleyClient(sqlite_node.url)
    try:
        start = await client.start_phone_sign_in(fresh_phone())
        code = await asyncio.to_thread(sqlite_node.next_sms_code, start["phone"])
        async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
            response = await http.post(
                "/v1/auth/phone/verify",
                json={"request_id": start["request_id"], "code": code, field: "a\u0000b"},
            )
        assert response.status_code == 422 and field in response.json()["error"]["message"]
        tokens = await client.verify_phone(start["request_id"], code, nickname="fine")
        assert tokens["new_user"] is True
    finally:
        await client.close()


async def test_nul_in_message_text_is_refused_on_postgres(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """On PostgreSQL a NUL in text is an error ack and a 422, not a 500; newlines are fine."""
    node, _ = cluster
    alice = await signed_in_client(node, "alice")
    bob = await signed_in_client(node, "bob", connect=False)
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        with pytest.raises(ParleyApiError) as ack_error:
            await alice.send_text(conversation["id"], "x\u0000y")
        assert ack_error.value.code == "invalid_request"
        with pytest.raises(ParleyApiError) as http_error:
            await alice.request(
                "POST",
                f"/v1/conversations/{conversation['id']}/messages",
                json={"client_msg_id": "nul", "body": {"text": "x\u0000y"}},
            )
        assert http_error.value.status == 422
        ack = await alice.send_text(conversation["id"], "line one\nline two\ttabbed")
        assert ack["seq"] == 1
    finally:
        await alice.close()
        await bob.close()


async def test_stolen_refresh_token_reuse_kicks_the_thief_everywhere(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """When a spent refresh token comes back, the session's sockets on every node drop at once."""
    node1, node2 = cluster
    victim = await signed_in_client(node1, "victim", connect=False)
    thief = ParleyClient(node2.url)
    bob = await signed_in_client(node1, "bob")
    try:
        stolen = victim.refresh_token
        thief.refresh_token, thief.access_token, thief.access_expires_at = stolen, None, 0
        await thief.refresh()  # the thief rotates first
        await thief.connect()
        conversation = await thief.open_direct(bob.user_id or "", mode="plaintext")
        with pytest.raises(ParleyApiError) as reuse:
            await victim.refresh()  # the victim's refresh reveals the theft
        assert reuse.value.code == "refresh_token_reused"
        for _ in range(50):
            if not thief.connected:
                break
            await asyncio.sleep(0.1)
        assert not thief.connected, "the thief's socket on the other node was dropped"
        with pytest.raises(ParleyApiError) as http_refused:
            await thief.request("GET", f"/v1/conversations/{conversation['id']}/messages")
        assert http_refused.value.code == "session_revoked"
        data = await thief.next_event("session:revoked", 5)
        assert data["session_id"] == thief.session_id
        with pytest.raises(ParleyApiError) as reconnect:
            await thief.connect(timeout=5)
        assert reconnect.value.code == "session_revoked"
    finally:
        for c in (victim, thief, bob):
            await c.close()


async def test_clients_cannot_fake_lifecycle_events(sqlite_node: ServerProcess) -> None:
    """EVENT packets named connect/disconnect are ignored: no extra socket, no lost auth."""
    alice = await signed_in_client(sqlite_node, "alice")
    bob = await signed_in_client(sqlite_node, "bob")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        for _ in range(20):
            await alice.sio.emit("connect", {"token": bob.access_token})
        await alice.sio.emit("disconnect", "client namespace disconnect")
        ack = await alice.send_text(conversation["id"], "still me")
        assert ack["sender_id"] == alice.user_id
        async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
            text = (await http.get("/metrics")).text
        gauge = next(
            line for line in text.splitlines() if line.startswith("parley_sockets_connected ")
        )
        assert float(gauge.split()[1]) < 20
    finally:
        await alice.close()
        await bob.close()


async def test_malformed_bodies_are_malformed_json(sqlite_node: ServerProcess) -> None:
    """Non-UTF-8 and absurdly nested bodies get 400 malformed_json."""
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
        for body in (b'{"phone": "\xff\xfe"}', b"[" * 5000 + b"]" * 5000):
            response = await http.post("/v1/auth/phone/start", content=body, headers=headers)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "malformed_json"


def test_sqlite_file_is_private(sqlite_node: ServerProcess) -> None:
    """The embedded database file is readable by its owner only."""
    path = Path(sqlite_node.env["PARLEY_DATABASE_URL"].removeprefix("sqlite://"))
    assert path.stat().st_mode & 0o777 == 0o600


# A polling client whose server dies mid-request leaves aiohttp's connection
# to the garbage collector (inside python-engineio); collect it here, where
# that is expected, rather than let it surface in whichever test runs next.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore:Unclosed connection:ResourceWarning")
async def test_sigterm_drains_sockets_before_stopping(tmp_path: Path) -> None:
    """SIGTERM disconnects websocket and long-polling clients at once, then the node exits."""
    env = {
        **BASE_ENV,
        "PARLEY_DATABASE_URL": f"sqlite://{tmp_path}/p.sqlite3",
        "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys"),
    }
    node = ServerProcess(env, name="draining").start()
    ws = await signed_in_client(node, "ws")
    poll = ParleyClient(node.url, transports=["polling"])
    try:
        start = await poll.start_phone_sign_in(fresh_phone())
        code = await asyncio.to_thread(node.next_sms_code, start["phone"])
        await poll.verify_phone(start["request_id"], code)
        await poll.connect()
        dropped: dict[str, float] = {}
        for name, c in (("ws", ws), ("poll", poll)):
            c.sio.reconnection = False
            c.on("disconnect", lambda *a, n=name: dropped.setdefault(n, time.monotonic()))
        started = time.monotonic()
        assert node.proc is not None
        node.proc.terminate()
        await asyncio.to_thread(node.proc.wait, 15)
        assert set(dropped) == {"ws", "poll"}
        assert max(dropped.values()) - started < 3, dropped
        node.wait_for_record(lambda r: r.get("message") == "SIGTERM: draining")
    finally:
        await ws.close()
        await poll.close()
        node.stop()
        del ws, poll
        gc.collect()


async def test_polling_client_disconnect_frees_its_request(sqlite_node: ServerProcess) -> None:
    """A long-polling client that says goodbye is released at once, not at the ping timeout."""
    client = await signed_in_client(sqlite_node, "poller", transports=["polling"])
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 3


async def test_sign_in_codes_are_limited_per_number_and_per_address(tmp_path: Path) -> None:
    """Codes texted to one number, codes asked for from one address and codes tried from one
    address are each capped per hour (429 with Retry-After); other addresses go on."""
    env = {
        **embedded_env(tmp_path),
        "PARLEY_AUTH_OTP_PER_IP_PER_HOUR": "3",
        "PARLEY_AUTH_OTP_PER_NUMBER_PER_HOUR": "2",
        "PARLEY_AUTH_OTP_RESEND_COOLDOWN": "0",
        "PARLEY_AUTH_OTP_MAX_ATTEMPTS": "2",
    }
    node = ServerProcess(env, name="otp-limits").start()

    def from_address(ip: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(local_address=ip)
        return httpx.AsyncClient(base_url=node.url, transport=transport)

    async def start(http: httpx.AsyncClient, phone: str) -> httpx.Response:
        return await http.post("/v1/auth/phone/start", json={"phone": phone})

    def assert_limited(response: httpx.Response, scope: str) -> None:
        assert response.status_code == 429, response.text
        error = response.json()["error"]
        assert error["code"] == "rate_limited" and scope in error["message"], error
        assert int(response.headers["retry-after"]) > 0

    try:
        async with (
            from_address("127.0.0.2") as a,
            from_address("127.0.0.3") as b,
            from_address("127.0.0.4") as c,
        ):
            number = fresh_phone()
            for _ in range(2):
                assert (await start(a, number)).is_success
            assert_limited(await start(b, number), "for this number")
            assert (await start(a, fresh_phone())).is_success  # a's third
            assert_limited(await start(a, fresh_phone()), "from this address")
            assert (await start(b, fresh_phone())).is_success, "b has its own allowance"

            # Tries: the per-address allowance is 3 codes x 2 attempts each.
            for _ in range(6):
                wrong = await c.post(
                    "/v1/auth/phone/verify", json={"request_id": "x" * 24, "code": "000000"}
                )
                assert wrong.status_code in (400, 401), wrong.text
            limited = await c.post(
                "/v1/auth/phone/verify", json={"request_id": "x" * 24, "code": "000000"}
            )
            assert_limited(limited, "from this address")
    finally:
        node.stop()

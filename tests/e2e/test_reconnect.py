"""The SDK survives a server restart, and expired tokens are refused with the reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client import ParleyApiError, ParleyClient
from config.keys import load_server_keys
from config.settings import AuthSettings
from crypto.tokens import AccessTokenIssuer
from tests.e2e.conftest import BASE_ENV
from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess


@pytest.fixture
def restartable_node(tmp_path: Path) -> Iterator[ServerProcess]:
    """A node of its own (SQLite), so stopping it disturbs no other test."""
    env = {
        **BASE_ENV,
        "PARLEY_DATABASE_URL": f"sqlite://{tmp_path}/parley.sqlite3",
        "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys"),
        # Below the SDK's refresh margin: every reconnect refreshes the token first.
        "PARLEY_AUTH_ACCESS_TOKEN_TTL": "45",
    }
    node = ServerProcess(env, name="restartable").start()
    yield node
    node.stop()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_client_reconnects_after_restart_and_catches_up(
    restartable_node: ServerProcess, transport: str
) -> None:
    """After the node drains and restarts, SDK sockets reconnect by themselves (both transports)."""
    node = restartable_node
    alice = await signed_in_client(node, "alice")
    bob = await signed_in_client(node, "bob", transports=[transport])
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        before = await alice.send_text(conversation["id"], "before restart")
        assert (await bob.next_message())["id"] == before["id"]
        refresh_before = bob.refresh_token

        node.stop()
        await asyncio.sleep(0.5)
        assert not bob.connected
        # A message written while bob is away (through HTTP once the node is back).
        restarted = ServerProcess(node.env, name="restarted")
        restarted.port, restarted.url = node.port, node.url
        restarted.start()
        try:
            await asyncio.gather(alice.wait_connected(15), bob.wait_connected(15))
            assert bob.refresh_token != refresh_before, "the reconnect refreshed the short token"
            while not alice.messages.empty():
                alice.messages.get_nowait()
            missed = await alice.request(
                "POST",
                f"/v1/conversations/{conversation['id']}/messages",
                json={"client_msg_id": "after-1", "body": {"text": "after restart"}},
            )
            assert (await bob.next_message())["id"] == missed["id"]
            page = await bob.history(conversation["id"], after_seq=before["seq"])
            assert [m["id"] for m in page["messages"]] == [missed["id"]]
        finally:
            await alice.close()
            await bob.close()
            restarted.stop()
    finally:
        # Idempotent: covers failures before the restart.
        await alice.close()
        await bob.close()


async def test_expired_token_is_refused_with_reason(sqlite_node: ServerProcess) -> None:
    """A genuinely signed but expired token gets token_expired on the socket and over HTTP."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        keys = load_server_keys(
            AuthSettings(keys_dir=Path(sqlite_node.env["PARLEY_AUTH_KEYS_DIR"]))
        )
        issuer = AccessTokenIssuer(
            keys.jwt_private_key, issuer="parley", audience="parley", ttl=900
        )
        expired = issuer.issue(
            user_id=alice.user_id or "", session_id=alice.session_id or "", now=time.time() - 3600
        )
        async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
            response = await http.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_expired"
        assert 'error="token_expired"' in response.headers["www-authenticate"]

        probe = ParleyClient(sqlite_node.url)
        probe.access_token, probe.access_expires_at = expired, time.time() + 3600
        try:
            with pytest.raises(ParleyApiError) as refused:
                await probe.connect(timeout=5)
            assert refused.value.code == "token_expired"
        finally:
            await probe.close()
    finally:
        await alice.close()


async def test_closing_a_client_that_is_reconnecting_closes_its_http_session(
    restartable_node: ServerProcess,
) -> None:
    """``close()`` on a client still trying a dead node stops the attempts and releases the
    aiohttp session a failed attempt left open (else the garbage collector finds it later)."""
    node = restartable_node
    client = await signed_in_client(node, "leaver")
    try:
        node.stop()
        deadline = time.monotonic() + 10
        # The connection's own session goes when the client sees the node gone; a failed
        # reconnect attempt then makes another, which engine.io keeps.
        while not (
            client.sio.eio.state == "disconnected"
            and client.sio.eio.http is not None
            and not client.sio.eio.http.closed
        ):
            assert time.monotonic() < deadline, "no failed reconnect attempt within 10 s"
            await asyncio.sleep(0.05)
        session = client.sio.eio.http
        await asyncio.sleep(0.2)  # the attempt's connect error has been handled
    finally:
        await client.close()
    assert session.closed
    assert client.sio.eio.http is None
    assert not client.connected

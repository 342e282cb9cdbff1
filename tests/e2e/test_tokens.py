"""Access-token key rotation and cross-node limits on real nodes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client import ParleyApiError, ParleyClient
from tests.e2e.conftest import BASE_ENV
from tests.support.clients import signed_in_client
from tests.support.phones import fresh_phone
from tests.support.server import ROOT, ServerProcess


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


@pytest.fixture
def rotating_node(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        **BASE_ENV,
        "PARLEY_DATABASE_URL": f"sqlite://{tmp_path}/parley.sqlite3",
        "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys"),
        "PARLEY_AUTH_KEY_RELOAD_INTERVAL": "0.5",
    }
    node = ServerProcess(env, name="rotating").start()
    yield node
    node.stop()


async def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(
    rotating_node: ServerProcess,
) -> None:
    """After `parley keys rotate` old tokens verify, new ones use the new kid, JWKS has both."""
    node = rotating_node
    before = await signed_in_client(node, "before", connect=False)
    old_kid = _kid(before.access_token or "")
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server.cli", "keys", "rotate"],
        cwd=ROOT,
        env={**clean_env, "PARLEY_AUTH_KEYS_DIR": node.env["PARLEY_AUTH_KEYS_DIR"]},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    new_kid = result.stdout.strip().rsplit(" ", 1)[1]
    assert new_kid != old_kid
    after = None
    try:
        for _ in range(40):
            async with httpx.AsyncClient(base_url=node.url) as http:
                kids = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
            if new_kid in kids:
                break
            await asyncio.sleep(0.25)
        assert kids == {old_kid, new_kid}
        after = await signed_in_client(node, "after", connect=False)
        assert _kid(after.access_token or "") == new_kid
        assert (await before.me())["id"] == before.user_id, "a token of the retired key still works"
        await before.connect()
        assert before.connected
    finally:
        await before.close()
        if after is not None:
            await after.close()


def test_rotate_refuses_when_keys_come_from_the_environment(tmp_path: Path) -> None:
    """With PARLEY_AUTH_JWT_PRIVATE_KEY set, rotation says how to rotate instead."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "keys", "rotate"],
        cwd=ROOT,
        env={
            **clean_env,
            "PARLEY_AUTH_JWT_PRIVATE_KEY": pem.decode(),
            "PARLEY_AUTH_KEYS_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "PARLEY_AUTH_JWT_RETIRED_PUBLIC_KEYS" in result.stderr


async def test_otp_limits_hold_across_nodes(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    """Codes per number and wrong guesses per code are counted in Redis, across both nodes."""
    node1, node2 = cluster
    phone = fresh_phone()
    one, two = ParleyClient(node1.url), ParleyClient(node2.url)
    try:
        start = await one.start_phone_sign_in(phone)
        with pytest.raises(ParleyApiError) as cooldown:
            await two.start_phone_sign_in(phone)
        assert cooldown.value.code == "otp_cooldown", "the cool-down is shared"
        code = await asyncio.to_thread(node1.next_sms_code, start["phone"])
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        codes = []
        for i in range(5):
            with pytest.raises(ParleyApiError) as error:
                await (one if i % 2 else two).verify_phone(start["request_id"], wrong)
            codes.append(error.value.code)
        assert codes[-1] == "otp_attempts_exceeded"
        with pytest.raises(ParleyApiError):
            await two.verify_phone(start["request_id"], code)
    finally:
        await one.close()
        await two.close()

"""Before the clock starts: users signed in by wallet, their devices, their groups.

Everything here goes through Parley's public HTTP API, so it works against any
node or load balancer: Sign-In with Ethereum (EIP-4361) with a fresh
eth-account key per user (the phone sign-in's console codes are only readable
on the server's own machine), one registered device per user for E2EE (keys
made here, the public halves certified by the server's CA), and groups of M
consecutive users, encrypted or plaintext.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from client.account import ethereum_signer
from crypto.devices import device_proof_payload

Progress = Callable[[str, int, int], None]


class PrepareError(RuntimeError):
    """The server refused a preparation step (the message says which and why)."""


@dataclass
class User:
    user_id: str
    access_token: str
    refresh_token: str
    expires_at: float
    device_id: str | None = None
    signing_key: bytes | None = None  # raw private keys, this process only
    agreement_key: bytes | None = None
    signing_public: bytes | None = None
    agreement_public: bytes | None = None
    conversation_id: str = ""
    last_seq: int = 0

    def spec(self) -> dict[str, Any]:
        """What a generator process needs of this session."""
        return {
            "user_id": self.user_id,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "conversation_id": self.conversation_id,
            "last_seq": self.last_seq,
            "device_id": self.device_id,
            "signing_key": self.signing_key,
            "agreement_key": self.agreement_key,
        }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any,
    *,
    token: str | None = None,
    expect: int = 200,
    attempts: int = 5,
) -> Any:
    """One API call; retried on connection errors and 429/5xx (the server may be busy)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    last = ""
    for attempt in range(attempts):
        try:
            async with session.request(method, path, json=body, headers=headers) as response:
                answer = await response.json(content_type=None)
                if response.status == expect:
                    return answer
                last = f"{response.status} {answer}"
                if response.status != 429 and response.status < 500:
                    break
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.2 * 2**attempt)
    raise PrepareError(f"{method} {path}: {last[:300]}")


async def _bounded(
    n: int,
    concurrency: int,
    step: Callable[[int], Awaitable[None]],
    progress: Progress | None,
    what: str,
) -> None:
    done = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        nonlocal done
        while not queue.empty():
            i = queue.get_nowait()
            await step(i)
            done += 1
            if progress is not None:
                progress(what, done, n)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))


async def sign_in(
    url: str,
    n: int,
    *,
    concurrency: int = 32,
    devices: bool = False,
    device_name: str = "parley-loadtest",
    progress: Progress | None = None,
) -> list[User]:
    """N new users signed in with fresh Ethereum keys; each with a device if ``devices``."""
    users: list[User | None] = [None] * n
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def one(i: int) -> None:
            account = Account.create()
            challenge = await _call(
                session,
                "POST",
                "/v1/auth/wallet/challenge",
                {"chain": "ethereum", "address": account.address},
            )
            message = challenge["message"]
            tokens = await _call(
                session,
                "POST",
                "/v1/auth/wallet/verify",
                {
                    "message": message,
                    "signature": ethereum_signer(account)(message),
                    "device_name": device_name,
                },
                attempts=1,  # a challenge is single use
            )
            user = User(
                user_id=tokens["user_id"],
                access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                expires_at=time.time() + float(tokens["expires_in"]),
            )
            if devices:
                signing, agreement = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
                signing_public, agreement_public = _raw_public(signing), _raw_public(agreement)
                proof = signing.sign(
                    device_proof_payload(user.user_id, signing_public, agreement_public)
                )
                device = await _call(
                    session,
                    "POST",
                    "/v1/devices",
                    {
                        "name": device_name,
                        "signing_key": _b64url(signing_public),
                        "agreement_key": _b64url(agreement_public),
                        "proof": _b64url(proof),
                    },
                    token=user.access_token,
                    expect=201,
                )
                user.device_id = str(device["id"])
                user.signing_key, user.agreement_key = (
                    _raw_private(signing),
                    _raw_private(agreement),
                )
                user.signing_public, user.agreement_public = signing_public, agreement_public
            users[i] = user

        await _bounded(n, concurrency, one, progress, "signed in")
    return [u for u in users if u is not None]


async def make_groups(
    url: str,
    users: list[User],
    size: int,
    *,
    encrypted: bool,
    concurrency: int = 16,
    progress: Progress | None = None,
) -> int:
    """Groups of ``size`` consecutive users (the last may be smaller); sets each user's
    ``conversation_id`` and ``last_seq``; the number of groups."""
    blocks = [users[i : i + size] for i in range(0, len(users), size)]
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, timeout=timeout) as session:

        async def one(number: int) -> None:
            block = blocks[number]
            body = await _call(
                session,
                "POST",
                "/v1/conversations/groups",
                {
                    "title": f"loadtest {number}",
                    "member_ids": [u.user_id for u in block[1:]],
                    "mode": "encrypted" if encrypted else "plaintext",
                },
                token=block[0].access_token,
                expect=201,
                attempts=1,
            )
            for user in block:
                user.conversation_id = str(body["id"])
                user.last_seq = int(body["last_seq"])

        await _bounded(len(blocks), concurrency, one, progress, "groups made")
    return len(blocks)


def directory(users: list[User]) -> dict[str, list[tuple[str, str, bytes, bytes]]]:
    """Per conversation, its members' devices: (user, device, agreement key, signing key)."""
    out: dict[str, list[tuple[str, str, bytes, bytes]]] = {}
    for u in users:
        if u.device_id and u.agreement_public and u.signing_public:
            out.setdefault(u.conversation_id, []).append(
                (u.user_id, u.device_id, u.agreement_public, u.signing_public)
            )
    return out

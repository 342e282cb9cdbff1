"""Talking to the node as a client does: phone sign-in, then timed requests.

Latency is measured per request in this process, from just before the
request is sent to when its whole body has been read, over keep-alive
connections (one per request in flight).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support.phones import fresh_phone
from tests.support.server import ServerProcess


@dataclass(frozen=True, slots=True)
class Account:
    user_id: str
    phone: str
    headers: dict[str, str]
    interests: tuple[str, ...] = ()  # on the profile


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, str] | None = None
    json: Any = None
    tag: str = ""


@dataclass(slots=True)
class Outcome:
    seconds: list[float] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0


async def sign_in(session: aiohttp.ClientSession, node: ServerProcess, n: int) -> list[Account]:
    """``n`` new users through phone sign-in (British numbers, outside the generated ones)."""
    accounts = []
    for _ in range(n):
        phone = fresh_phone("GB")
        async with session.post("/v1/auth/phone/start", json={"phone": phone}) as response:
            start = await response.json()
            if response.status != 200:
                raise SystemExit(f"phone start failed: {response.status} {start}")
        code = await asyncio.to_thread(node.next_sms_code, start["phone"], 30)
        async with session.post(
            "/v1/auth/phone/verify", json={"request_id": start["request_id"], "code": code}
        ) as response:
            pair = await response.json()
            if response.status != 200:
                raise SystemExit(f"phone verify failed: {response.status} {pair}")
        accounts.append(
            Account(
                user_id=pair["user_id"],
                phone=start["phone"],
                headers={"Authorization": f"Bearer {pair['access_token']}"},
            )
        )
    return accounts


async def update_profile(
    session: aiohttp.ClientSession, account: Account, change: dict[str, Any]
) -> None:
    async with session.patch("/v1/me/profile", headers=account.headers, json=change) as response:
        body = await response.json()
        if response.status != 200:
            raise SystemExit(f"profile update failed: {response.status} {body}")


async def fire(
    session: aiohttp.ClientSession, requests: Sequence[Request], concurrency: int, *, keep: bool
) -> Outcome:
    """Send every request with ``concurrency`` in flight; latencies in request order."""
    out = Outcome(
        seconds=[0.0] * len(requests),
        tags=[r.tag for r in requests],
        bodies=[None] * len(requests),
    )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            r = requests[i]
            started = time.perf_counter()
            async with session.request(
                r.method, r.path, headers=r.headers, params=r.params, json=r.json
            ) as response:
                body = await response.json()
            out.seconds[i] = time.perf_counter() - started
            if response.status != 200:
                out.errors.append(f"{r.method} {r.path} {r.params}: {response.status} {body}")
            if keep:
                out.bodies[i] = body

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    out.wall = time.perf_counter() - started
    return out

"""Signing users in through a real node, the way a person does."""

from __future__ import annotations

import asyncio

from client import ParleyClient
from tests.support.phones import fresh_phone
from tests.support.server import ServerProcess


async def signed_in_client(
    node: ServerProcess,
    nickname: str = "",
    *,
    phone: str | None = None,
    connect: bool = True,
    transports: list[str] | None = None,
) -> ParleyClient:
    """A client signed in by phone on ``node`` (code read from the node's log), connected."""
    phone = phone or fresh_phone()
    client = ParleyClient(
        node.url, device_name=f"test-{nickname or 'device'}", transports=transports
    )
    start = await client.start_phone_sign_in(phone)
    code = await asyncio.to_thread(node.next_sms_code, start["phone"])
    await client.verify_phone(start["request_id"], code, nickname=nickname or None)
    if connect:
        await client.connect()
    return client

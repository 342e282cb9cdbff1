"""The server's check of an end-to-end-encrypted envelope (ARCHITECTURE.md section 6).

The server never decrypts. It checks that the envelope is well formed and
within limits (``crypto.envelope``), that its header names this conversation,
this sender and this ``client_msg_id``, that the sending device is an active
device of the sender and signed it, and that it is addressed to exactly the
active devices of the members (the sender's other devices included; the
sending device may be listed or not): a device left out could not read the
message, and a device outside the conversation must not be able to.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from config.errors import InvalidRequestError
from crypto.devices import decode_b64url
from crypto.envelope import EnvelopeError, parse_envelope, verify_envelope_with_raw_key
from server.chats.access import ROSTER_TTL, NoticeKeptCache
from storage import sql


class RecipientMismatchError(InvalidRequestError):
    code = "recipient_mismatch"


class UnknownSenderDeviceError(EnvelopeError):
    """The header names no active device of the sender (``invalid_envelope``)."""


DEVICES_CHANGED = "devices_changed"

_DEVICES_OF_MEMBERS_PG = (
    "SELECT id, user_id, signing_key FROM devices"
    " WHERE revoked_at IS NULL AND user_id = ANY(?::uuid[])"
)


@dataclass(frozen=True)
class _DeviceSet:
    expires: float
    members: frozenset[str]
    devices: dict[str, tuple[str, str]]  # device id -> (user id, signing key)


class MemberDevices(NoticeKeptCache):
    """The active devices of each conversation's members, kept in memory.

    Every encrypted send needs them (the signer's key and the exact recipient
    set); reading them per message cost more than storing the message. An
    entry holds for ``ttl`` seconds and only for the member set it was read
    for (a membership change misses it). A device registered or revoked drops
    every entry with its user here at once and on the other nodes when the
    control message arrives (milliseconds); how lost control messages are
    handled is ``NoticeKeptCache``'s, as for rosters (server/chats/access.py).
    """

    def __init__(
        self,
        ttl: float = ROSTER_TTL,
        size: int = 100_000,
        publish: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self._ttl = ttl
        self._size = size
        self._publish = publish
        self._entries: dict[str, _DeviceSet] = {}
        self._by_user: dict[str, set[str]] = {}

    async def of(
        self, conversation_id: str, members: Collection[str]
    ) -> dict[str, tuple[str, str]]:
        """Device id -> (user id, signing key) for the active devices of ``members``."""
        now = time.monotonic()
        member_set = frozenset(members)
        entry = self._entries.get(conversation_id)
        if entry is not None and entry.expires > now and entry.members == member_set:
            return entry.devices
        generation = self._generation
        devices = {
            str(r["id"]): (str(r["user_id"]), str(r["signing_key"]))
            for r in (await _read_devices(sorted(member_set)) if member_set else [])
        }
        if self._may_keep(generation):  # a set read before a revocation cannot outlive it
            if len(self._entries) >= self._size:
                self._entries.clear()  # crude but bounded; sets refill on demand
                self._by_user.clear()
            self._entries[conversation_id] = _DeviceSet(now + self._ttl, member_set, devices)
            for user_id in member_set:
                self._by_user.setdefault(user_id, set()).add(conversation_id)
        return devices

    def _drop_all(self) -> None:
        self._entries.clear()
        self._by_user.clear()

    def forget_conversation(self, conversation_id: str) -> None:
        """Drop one conversation's set (this node only), to read it again."""
        self._dropped()
        self._entries.pop(conversation_id, None)

    def forget_user(self, user_id: str) -> None:
        """Drop every set with this user's devices (this node only)."""
        self._dropped()
        for conversation_id in self._by_user.pop(user_id, ()):
            self._entries.pop(conversation_id, None)

    async def changed(self, user_id: str) -> None:
        """The user's devices changed: drop their sets here and on every node."""
        self.forget_user(user_id)
        if self._publish is not None:
            await self._publish({"type": DEVICES_CHANGED, "user_id": user_id})

    async def on_notice(self, message: dict[str, Any]) -> None:
        self.forget_user(str(message.get("user_id")))


async def _read_devices(user_ids: list[str]) -> list[dict[str, Any]]:
    if sql.is_postgres():
        # One statement whatever the group's size (asyncpg prepares each text once).
        return await sql.fetch(_DEVICES_OF_MEMBERS_PG, [user_ids])
    placeholders = ", ".join("?" * len(user_ids))  # only placeholders go in the text
    return await sql.fetch(
        "SELECT id, user_id, signing_key FROM devices"  # noqa: S608
        f" WHERE revoked_at IS NULL AND user_id IN ({placeholders})",
        user_ids,
    )


class EnvelopeChecker:
    def __init__(self, devices: MemberDevices | None = None) -> None:
        self.devices = devices or MemberDevices()

    async def check(
        self,
        envelope: dict[str, Any],
        *,
        conversation_id: str,
        members: Collection[str],
        sender_id: str,
        client_msg_id: str,
    ) -> None:
        """Raise ``EnvelopeError`` (or a subclass) unless the envelope may be stored;
        ``members`` are the conversation's (from the roster the send was allowed by)."""
        parsed = parse_envelope(envelope)
        header = parsed.header
        for field, wanted in (
            ("conversation_id", conversation_id),
            ("sender_user_id", sender_id),
            ("client_msg_id", client_msg_id),
        ):
            if getattr(header, field) != wanted:
                raise EnvelopeError(f"header.{field}: does not match the message")
        devices = await self.devices.of(conversation_id, members)
        signer = devices.get(header.sender_device_id)
        if signer is None or signer[0] != sender_id:
            raise UnknownSenderDeviceError("header.sender_device_id: not an active device of yours")
        verify_envelope_with_raw_key(parsed, decode_b64url(signer[1], 32))
        expected = set(devices) - {header.sender_device_id}
        given = {r.device_id for r in parsed.recipients} - {header.sender_device_id}
        missing, extra = sorted(expected - given), sorted(given - expected)
        if missing or extra:
            detail = ""
            if missing:
                detail += f"; missing {', '.join(missing)}"
            if extra:
                detail += f"; not in the conversation {', '.join(extra)}"
            raise RecipientMismatchError(
                "recipients: must be every active device of the members but the sending one"
                + detail
            )

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

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from config.errors import InvalidRequestError
from crypto.devices import decode_b64url
from crypto.envelope import EnvelopeError, parse_envelope, verify_envelope
from storage.models import Device, Member


class RecipientMismatchError(InvalidRequestError):
    code = "recipient_mismatch"


class EnvelopeChecker:
    async def check(
        self, envelope: dict[str, Any], *, conversation_id: str, sender_id: str, client_msg_id: str
    ) -> None:
        parsed = parse_envelope(envelope)
        header = parsed.header
        for field, wanted in (
            ("conversation_id", conversation_id),
            ("sender_user_id", sender_id),
            ("client_msg_id", client_msg_id),
        ):
            if getattr(header, field) != wanted:
                raise EnvelopeError(f"header.{field}: does not match the message")
        device = await Device.get_or_none(
            id=header.sender_device_id, user_id=sender_id, revoked_at=None
        )
        if device is None:
            raise EnvelopeError("header.sender_device_id: not an active device of yours")
        verify_envelope(
            parsed, Ed25519PublicKey.from_public_bytes(decode_b64url(device.signing_key, 32))
        )
        members = await Member.filter(conversation_id=conversation_id).values_list(
            "user_id", flat=True
        )
        expected = {
            str(d)
            for d in await Device.filter(user_id__in=list(members), revoked_at=None).values_list(
                "id", flat=True
            )
        } - {header.sender_device_id}
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

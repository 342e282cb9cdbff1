"""Devices and the CA (seed 000; ARCHITECTURE.md sections 4 and 6).

A device registers the public halves of the keys it made, with a proof that
it holds the signing key (``crypto.devices``); the server, as CA, certifies
the signing key for the user's public ``code`` and stores the device. The
server never makes or sees a private key.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from config.errors import ConflictError, NotFoundError
from crypto.ca import ALGORITHM, PAYLOAD_TAG, DeviceCertificate, issue_certificate
from crypto.devices import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    decode_b64url,
    encode_b64url,
    verify_device_proof,
)
from crypto.tokens import key_id, raw_public_key
from realtime.events import KEYS_CHANGED, Emitter
from server.chats.envelopes import MemberDevices
from server.devices.schemas import (
    CaOut,
    CertificateOut,
    DeviceList,
    DeviceOut,
    DirectoryDevice,
    UserKeys,
    UserKeysList,
)
from server.users.service import UserNotFoundError
from storage.models import Device, Member, User

# Every sender wraps the content key once per recipient device (section 6), so
# this bounds the size of an envelope to one user; 20 covers phones, tablets,
# desktops and browsers with room to spare. Owned here until a setting exists.
MAX_ACTIVE_DEVICES: Final = 20

# "parley-ca-v1": the name of the layout crypto.ca signs, taken from its tag.
CA_PAYLOAD_FORMAT: Final = PAYLOAD_TAG.rstrip(b"\x00").decode("ascii")


class DeviceNotFoundError(NotFoundError):
    code = "device_not_found"


class DeviceKeyTakenError(ConflictError):
    code = "device_key_taken"


class TooManyDevicesError(ConflictError):
    code = "too_many_devices"


def _certificate(code: str, device: Device) -> DeviceCertificate:
    return DeviceCertificate(
        code=code,
        reg_timestamp=device.reg_timestamp,
        device_public_key=decode_b64url(device.signing_key, KEY_BYTES),
        reg_sign=decode_b64url(device.reg_sign, SIGNATURE_BYTES),
    )


def device_out(code: str, device: Device) -> DeviceOut:
    return DeviceOut(
        id=str(device.id),
        name=device.name,
        signing_key=device.signing_key,
        agreement_key=device.agreement_key,
        proof=device.proof,
        created_at=device.created_at,
        certificate=CertificateOut(**_certificate(code, device).to_dict()),
    )


class DeviceService:
    """Registers, lists and revokes a user's devices; signs their certificates as the CA."""

    def __init__(
        self,
        ca_private_key: Ed25519PrivateKey,
        emitter: Emitter | None = None,
        member_devices: MemberDevices | None = None,
    ) -> None:
        self._ca_key = ca_private_key
        self._emitter = emitter
        self._member_devices = member_devices
        public = ca_private_key.public_key()
        self._ca = CaOut(
            alg=ALGORITHM,
            public_key=encode_b64url(raw_public_key(public)),
            kid=key_id(public),
            payload_format=CA_PAYLOAD_FORMAT,
        )

    def ca(self) -> CaOut:
        """The CA public key that verifies every device certificate."""
        return self._ca

    async def register(
        self,
        user_id: str,
        session_id: str,
        *,
        name: str,
        signing_key: bytes,
        agreement_key: bytes,
        proof: bytes,
    ) -> DeviceOut:
        """Check the keys and the proof, certify the signing key, store the device.

        A signing key is registered once, ever: a revoked device keeps its row,
        so its key cannot come back (409 ``device_key_taken``).
        """
        # One signature check and one X25519 exchange: microseconds, fine on the loop.
        verify_device_proof(user_id, signing_key, agreement_key, proof)
        encoded_key = encode_b64url(signing_key)
        if await Device.exists(signing_key=encoded_key):
            raise DeviceKeyTakenError("signing_key: already registered to a device")
        try:
            async with in_transaction():
                # The user's row lock (PostgreSQL; SQLite runs one writer at a
                # time) makes count-then-insert atomic against parallel registrations.
                user = await User.filter(id=user_id).select_for_update().first()
                if user is None:
                    raise UserNotFoundError("no such user")
                active = await Device.filter(user_id=user_id, revoked_at__isnull=True).count()
                if active >= MAX_ACTIVE_DEVICES:
                    raise TooManyDevicesError(
                        f"at most {MAX_ACTIVE_DEVICES} active devices; revoke one first"
                    )
                cert = issue_certificate(
                    self._ca_key, user.code, signing_key, reg_timestamp=int(time.time())
                )
                device = await Device.create(
                    user_id=user_id,
                    session_id=session_id,
                    name=name,
                    signing_key=encoded_key,
                    agreement_key=encode_b64url(agreement_key),
                    proof=encode_b64url(proof),
                    reg_timestamp=cert.reg_timestamp,
                    reg_sign=encode_b64url(cert.reg_sign),
                )
        except IntegrityError:
            # The unique index on signing_key, when a parallel request won.
            raise DeviceKeyTakenError("signing_key: already registered to a device") from None
        await self._announce(user_id)
        return device_out(user.code, device)

    async def list_devices(self, user_id: str) -> DeviceList:
        """The user's active devices, oldest first, each with its certificate."""
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise UserNotFoundError("no such user")
        devices = await Device.filter(user_id=user_id, revoked_at__isnull=True).order_by(
            "created_at", "id"
        )
        return DeviceList(devices=[device_out(user.code, d) for d in devices])

    async def revoke(self, user_id: str, device_id: str) -> None:
        """Revoke one of the user's own devices; revoking it again is a no-op.

        Someone else's device answers exactly like an unknown id, so ids of
        other people's devices cannot be probed.
        """
        revoked = await Device.filter(
            id=device_id, user_id=user_id, revoked_at__isnull=True
        ).update(revoked_at=datetime.now(UTC))
        if not revoked and not await Device.exists(id=device_id, user_id=user_id):
            raise DeviceNotFoundError("no such device")
        if revoked:
            await self._announce(user_id)

    async def keys_of(self, user_ids: list[str], *, include_revoked: bool) -> UserKeysList:
        """The device keys of these users (the directory senders encrypt to)."""
        users = {str(u.id): u for u in await User.filter(id__in=user_ids)}
        query = Device.filter(user_id__in=list(users))
        if not include_revoked:
            query = query.filter(revoked_at__isnull=True)
        by_user: dict[str, list[Device]] = {uid: [] for uid in users}
        for device in await query.order_by("created_at", "id"):
            by_user[str(device.user_id)].append(device)
        return UserKeysList(
            users=[
                UserKeys(
                    user_id=uid,
                    code=users[uid].code,
                    devices=[
                        DirectoryDevice(
                            **device_out(users[uid].code, d).model_dump(),
                            revoked=d.revoked_at is not None,
                        )
                        for d in by_user[uid]
                    ],
                )
                for uid in sorted(users)
            ]
        )

    async def _announce(self, user_id: str) -> None:
        """Tell the user and everyone who shares a conversation with them: keys changed."""
        if self._member_devices is not None:
            # First: a send checked after this must see the new device set.
            await self._member_devices.changed(user_id)
        if self._emitter is None:
            return
        conversations = Member.filter(user_id=user_id).values_list("conversation_id", flat=True)
        peers = await Member.filter(conversation_id__in=Subquery(conversations)).values_list(
            "user_id", flat=True
        )
        audience = sorted({str(p) for p in peers} | {user_id})
        await self._emitter.emit_to_users(KEYS_CHANGED, {"user_id": user_id}, audience)

"""End-to-end encryption in the SDK: this device's keys, the key directory, envelopes.

    await client.setup_device()                         # makes and registers this device's keys
    ack = await client.send_encrypted(conversation_id, {"text": "hi"})
    message = await client.next_message()
    payload = await client.open_message(message)        # {"text": "hi"}

Keys are made here and only their public halves leave the process. Every
device key fetched from the directory is checked against its CA certificate
(seed 000) before anything is encrypted to it or trusted from it.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from crypto.ca import DeviceCertificate, verify_certificate
from crypto.envelope import decrypt_envelope, encrypt_envelope

MESSAGE_SEND = "message:send"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class DeviceIdentity:
    """This device: its id and its private keys (never sent anywhere)."""

    device_id: str
    signing_key: Ed25519PrivateKey
    agreement_key: X25519PrivateKey


@dataclass(frozen=True)
class DirectoryEntry:
    device_id: str
    user_id: str
    signing_key: Ed25519PublicKey
    agreement_key: X25519PublicKey
    revoked: bool


class UntrustedKeyError(Exception):
    """A directory entry whose certificate does not verify: never encrypt to it."""


class E2EEMethods:
    """Mixed into ``ParleyClient``."""

    if TYPE_CHECKING:

        async def request(
            self,
            method: str,
            path: str,
            *,
            json: Any = None,
            params: dict[str, Any] | None = None,
            auth: bool = True,
        ) -> Any: ...

        async def emit(self, event: str, payload: Any, *, timeout: float = 10.0) -> Any: ...

        async def register_device(
            self,
            signing_key: Ed25519PrivateKey,
            agreement_key: X25519PrivateKey,
            *,
            name: str | None = None,
        ) -> dict[str, Any]: ...

        async def ca(self) -> dict[str, Any]: ...

        user_id: str | None

    device: DeviceIdentity | None = None
    _directory: dict[str, list[DirectoryEntry]]
    _ca_key: Ed25519PublicKey | None = None

    def _e2ee_init(self) -> None:
        self.device = None
        self._directory = {}
        self._ca_key = None

    async def setup_device(self, name: str | None = None) -> DeviceIdentity:
        """Make this device's Ed25519 and X25519 keys and register their public halves."""
        signing, agreement = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
        registered = await self.register_device(signing, agreement, name=name)
        self.device = DeviceIdentity(registered["id"], signing, agreement)
        return self.device

    def forget_keys(self, user_id: str | None = None) -> None:
        """Drop cached directory entries (all, or one user's): on ``keys:changed``."""
        if user_id is None:
            self._directory.clear()
        else:
            self._directory.pop(user_id, None)

    async def directory(
        self, user_ids: list[str], *, include_revoked: bool = False
    ) -> dict[str, list[DirectoryEntry]]:
        """Certified device keys of users (cached until ``keys:changed``)."""
        wanted = [u for u in dict.fromkeys(user_ids) if u not in self._directory or include_revoked]
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            answer = await self.request(
                "GET",
                "/v1/keys",
                params={"user_ids": ",".join(chunk), "include_revoked": "true"},
            )
            for user in answer["users"]:
                self._directory[user["user_id"]] = [
                    await self._trusted(user["user_id"], user["code"], d) for d in user["devices"]
                ]
        return {
            u: [e for e in self._directory.get(u, []) if include_revoked or not e.revoked]
            for u in user_ids
        }

    async def _trusted(self, user_id: str, code: str, device: dict[str, Any]) -> DirectoryEntry:
        if self._ca_key is None:
            self._ca_key = Ed25519PublicKey.from_public_bytes(
                _unb64((await self.ca())["public_key"])
            )
        certificate = DeviceCertificate.from_dict(device["certificate"])
        verify_certificate(self._ca_key, certificate)
        signing = _unb64(device["signing_key"])
        if certificate.device_public_key != signing or certificate.code != code:
            raise UntrustedKeyError(
                f"device {device['id']}: certificate is for another key or user"
            )
        return DirectoryEntry(
            device_id=device["id"],
            user_id=user_id,
            signing_key=Ed25519PublicKey.from_public_bytes(signing),
            agreement_key=X25519PublicKey.from_public_bytes(_unb64(device["agreement_key"])),
            revoked=bool(device.get("revoked")),
        )

    async def send_encrypted(
        self,
        conversation_id: str,
        payload: dict[str, Any],
        *,
        client_msg_id: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Encrypt ``payload`` (JSON) to every member device and send it; the ack."""
        from client.sdk import ParleyApiError

        assert self.device is not None and self.user_id is not None, "call setup_device() first"
        client_msg_id = client_msg_id or uuid.uuid4().hex
        for attempt in range(2):
            conversation = await self.request("GET", f"/v1/conversations/{conversation_id}")
            members = [m["user_id"] for m in conversation["members"]]
            keys = await self.directory(members)
            # Every member device, this one included, so it can read its own
            # messages back from history.
            recipients = {
                e.device_id: e.agreement_key for entries in keys.values() for e in entries
            }
            envelope = encrypt_envelope(
                payload=orjson.dumps(payload),
                conversation_id=conversation_id,
                sender_user_id=self.user_id,
                sender_device_id=self.device.device_id,
                client_msg_id=client_msg_id,
                created_at=int(time.time() * 1000),
                content_type="application/json",
                sender_signing_key=self.device.signing_key,
                recipients=recipients,
            )
            message = {
                "conversation_id": conversation_id,
                "client_msg_id": client_msg_id,
                "kind": "envelope",
                "body": envelope,
            }
            try:
                result: dict[str, Any] = await self.emit(MESSAGE_SEND, message, timeout=timeout)
                return result
            except ParleyApiError as exc:
                if exc.code != "recipient_mismatch" or attempt:
                    raise
                self.forget_keys()  # someone's devices changed: fetch them again
        raise AssertionError("unreachable")

    async def open_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """Verify and decrypt an envelope message addressed to this device; its payload."""
        assert self.device is not None, "call setup_device() first"
        envelope = message["body"]
        header = envelope["header"]
        sender = header["sender_user_id"]
        # The envelope must be what it arrived as: this conversation, this sender.
        if header.get("conversation_id") != message["conversation_id"] or sender != message.get(
            "sender_id"
        ):
            raise UntrustedKeyError("the envelope's header does not match the message it came in")
        entries = (await self.directory([sender], include_revoked=True))[sender]
        device = next((e for e in entries if e.device_id == header["sender_device_id"]), None)
        if device is None:
            self.forget_keys(sender)
            entries = (await self.directory([sender], include_revoked=True))[sender]
            device = next((e for e in entries if e.device_id == header["sender_device_id"]), None)
        if device is None:
            raise UntrustedKeyError("the sending device is not in the directory")
        plaintext = decrypt_envelope(
            envelope,
            device_id=self.device.device_id,
            agreement_key=self.device.agreement_key,
            sender_signing_public=device.signing_key,
        )
        decoded: dict[str, Any] = orjson.loads(plaintext)
        return decoded

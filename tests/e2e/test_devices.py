"""Devices and the CA on real nodes: keys made here, certified there, checked here."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from client import ParleyApiError, ParleyClient
from crypto.ca import CertificateError, DeviceCertificate, verify_certificate
from crypto.devices import device_proof_payload
from crypto.tokens import key_id
from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclasses.dataclass
class NewDevice:
    """Key pairs made on the 'device'; only public halves and the proof leave it."""

    signer: Ed25519PrivateKey
    agreement: X25519PrivateKey

    @classmethod
    def generate(cls) -> NewDevice:
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    def body(self, user_id: str, name: str = "phone", **override: Any) -> dict[str, Any]:
        signing, agreement = raw(self.signer), raw(self.agreement)
        proof = self.signer.sign(device_proof_payload(user_id, signing, agreement))
        body = {
            "name": name,
            "signing_key": b64url(signing),
            "agreement_key": b64url(agreement),
            "proof": b64url(proof),
        }
        body.update(override)
        return body


async def register(client: ParleyClient, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await client.request("POST", "/v1/devices", json=body)
    return result


async def fetch_ca(node: ServerProcess) -> Ed25519PublicKey:
    async with httpx.AsyncClient(base_url=node.url) as http:
        response = await http.get("/v1/ca")
    assert response.status_code == 200
    return Ed25519PublicKey.from_public_bytes(unb64url(response.json()["public_key"]))


async def refused(client: ParleyClient, body: Any) -> ParleyApiError:
    with pytest.raises(ParleyApiError) as caught:
        await client.request("POST", "/v1/devices", json=body)
    return caught.value


async def listed_ids(client: ParleyClient) -> list[str]:
    page = await client.request("GET", "/v1/devices")
    return [d["id"] for d in page["devices"]]


async def test_ca_publishes_its_public_key(sqlite_node: ServerProcess) -> None:
    """GET /v1/ca needs no sign-in and gives the raw key, its RFC 7638 kid and the format."""
    async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
        response = await http.get("/v1/ca")
    assert response.status_code == 200
    ca = response.json()
    assert set(ca) == {"alg", "public_key", "kid", "payload_format"}
    assert ca["alg"] == "Ed25519" and ca["payload_format"] == "parley-ca-v1"
    assert "=" not in ca["public_key"] and len(unb64url(ca["public_key"])) == 32
    assert ca["kid"] == key_id(Ed25519PublicKey.from_public_bytes(unb64url(ca["public_key"])))


async def test_registered_device_gets_a_certificate_that_verifies(
    sqlite_node: ServerProcess,
) -> None:
    """A device registers its public keys; the certificate verifies with /v1/ca for its code."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        device = NewDevice.generate()
        before = int(time.time())
        created = await register(alice, device.body(alice.user_id or "", name="Alice's phone"))
        assert set(created) == {
            "id",
            "name",
            "signing_key",
            "agreement_key",
            "proof",
            "created_at",
            "certificate",
        }
        assert created["name"] == "Alice's phone"
        assert created["signing_key"] == b64url(raw(device.signer))
        assert created["agreement_key"] == b64url(raw(device.agreement))

        cert = DeviceCertificate.from_dict(created["certificate"])
        verify_certificate(await fetch_ca(sqlite_node), cert)
        assert cert.code == (await alice.me())["code"]
        assert cert.device_public_key == raw(device.signer)
        assert before <= cert.reg_timestamp <= int(time.time())
    finally:
        await alice.close()


async def test_tampered_certificate_fails_verification(sqlite_node: ServerProcess) -> None:
    """Flipping a byte of reg_sign, or changing the code or timestamp, breaks the certificate."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        created = await register(alice, NewDevice.generate().body(alice.user_id or ""))
        ca = await fetch_ca(sqlite_node)
        cert = DeviceCertificate.from_dict(created["certificate"])
        verify_certificate(ca, cert)

        flipped = bytearray(cert.reg_sign)
        flipped[0] ^= 0x01
        other_key = raw(Ed25519PrivateKey.generate())
        for tampered in (
            dataclasses.replace(cert, reg_sign=bytes(flipped)),
            dataclasses.replace(cert, code=cert.code + "x"),
            dataclasses.replace(cert, reg_timestamp=cert.reg_timestamp - 1),
            dataclasses.replace(cert, device_public_key=other_key),
        ):
            with pytest.raises(CertificateError):
                verify_certificate(ca, tampered)
        with pytest.raises(CertificateError):
            verify_certificate(Ed25519PrivateKey.generate().public_key(), cert)
    finally:
        await alice.close()


async def test_bad_proofs_are_refused(sqlite_node: ServerProcess) -> None:
    """A proof by another key, for another account, or of random bytes is 422 invalid_proof."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        user_id = alice.user_id or ""
        device = NewDevice.generate()
        intruder = Ed25519PrivateKey.generate()
        signing, agreement = raw(device.signer), raw(device.agreement)
        by_other_key = intruder.sign(device_proof_payload(user_id, signing, agreement))
        for_other_user = device.signer.sign(
            device_proof_payload(str(uuid.uuid4()), signing, agreement)
        )
        for proof in (by_other_key, for_other_user, bytes(64)):
            error = await refused(alice, device.body(user_id, proof=b64url(proof)))
            assert (error.status, error.code) == (422, "invalid_proof"), error
        assert await listed_ids(alice) == [], "nothing is stored for a refused proof"
        # The same keys with a good proof are still free to register.
        await register(alice, device.body(user_id))
    finally:
        await alice.close()


async def test_malformed_bodies_are_clear_422s(sqlite_node: ServerProcess) -> None:
    """Short keys, non-base64url, padding, unknown fields, long or multi-line names are refused."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        user_id = alice.user_id or ""
        device = NewDevice.generate()
        good = device.body(user_id)
        short_key = b64url(raw(device.signer)[:31])
        cases: list[tuple[dict[str, Any], str]] = [
            ({**good, "signing_key": short_key}, "signing_key"),
            ({**good, "agreement_key": b64url(bytes(31))}, "agreement_key"),
            ({**good, "signing_key": "!" * 43}, "signing_key"),
            ({**good, "signing_key": good["signing_key"] + "="}, "signing_key"),
            ({**good, "signing_key": 12345}, "signing_key"),
            ({**good, "proof": b64url(bytes(63))}, "proof"),
            ({**good, "admin": True}, "admin"),
            ({**good, "name": "x" * 129}, "name"),
            ({**good, "name": "two\nlines"}, "name"),
            ({k: v for k, v in good.items() if k != "proof"}, "proof"),
        ]
        for body, field in cases:
            error = await refused(alice, body)
            assert (error.status, error.code) == (422, "invalid_request"), (field, error)
            assert field in error.message, (field, error.message)
        not_json = await alice.http.post(
            "/v1/devices",
            content=b"{not json",
            headers={
                "Authorization": f"Bearer {alice.access_token}",
                "Content-Type": "application/json",
            },
        )
        assert not_json.status_code == 400
        assert not_json.json()["error"]["code"] == "malformed_json"
        assert await listed_ids(alice) == []
    finally:
        await alice.close()


async def test_unusable_keys_are_invalid_key(sqlite_node: ServerProcess) -> None:
    """A small-order Ed25519 key (whose 'proof' verifies for any message) is 422 invalid_key."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        identity = (1).to_bytes(32, "little")
        body = {
            "signing_key": b64url(identity),
            "agreement_key": b64url(raw(X25519PrivateKey.generate())),
            # R = identity, s = 0: valid for every message under the identity key.
            "proof": b64url(identity + bytes(32)),
        }
        error = await refused(alice, body)
        assert (error.status, error.code) == (422, "invalid_key")
        weak_agreement = NewDevice.generate()
        signing = raw(weak_agreement.signer)
        zero = bytes(32)
        proof = weak_agreement.signer.sign(device_proof_payload(alice.user_id or "", signing, zero))
        error = await refused(
            alice,
            {"signing_key": b64url(signing), "agreement_key": b64url(zero), "proof": b64url(proof)},
        )
        assert (error.status, error.code) == (422, "invalid_key")
    finally:
        await alice.close()


async def test_device_routes_need_a_sign_in(sqlite_node: ServerProcess) -> None:
    """Without an access token, register, list and revoke answer 401 unauthenticated."""
    async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
        body = NewDevice.generate().body(str(uuid.uuid4()))
        for response in (
            await http.post("/v1/devices", json=body),
            await http.get("/v1/devices"),
            await http.delete(f"/v1/devices/{uuid.uuid4()}"),
        ):
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthenticated"
        forged = await http.get("/v1/devices", headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code == 401
        assert forged.json()["error"]["code"] == "invalid_token"


async def test_a_signing_key_registers_once(sqlite_node: ServerProcess) -> None:
    """The same signing key again, by the same or another user, is 409 device_key_taken."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    bob = await signed_in_client(sqlite_node, "bob", connect=False)
    try:
        device = NewDevice.generate()
        await register(alice, device.body(alice.user_id or ""))
        again = await refused(alice, device.body(alice.user_id or "", name="again"))
        assert (again.status, again.code) == (409, "device_key_taken")
        # Bob even holds the private key and proves it for his own account.
        stolen = await refused(bob, device.body(bob.user_id or ""))
        assert (stolen.status, stolen.code) == (409, "device_key_taken")
        assert await listed_ids(bob) == []
    finally:
        await alice.close()
        await bob.close()


async def test_list_then_revoke(sqlite_node: ServerProcess) -> None:
    """The list shows active devices with certificates; DELETE is 204 and drops it from the list."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        user_id = alice.user_id or ""
        ca = await fetch_ca(sqlite_node)
        phone, laptop = NewDevice.generate(), NewDevice.generate()
        first = await register(alice, phone.body(user_id, name="phone"))
        second = await register(alice, laptop.body(user_id, name="laptop"))

        page = await alice.request("GET", "/v1/devices")
        assert [d["id"] for d in page["devices"]] == [first["id"], second["id"]]
        assert page["devices"][0] == first
        for listed in page["devices"]:
            verify_certificate(ca, DeviceCertificate.from_dict(listed["certificate"]))

        headers = {"Authorization": f"Bearer {alice.access_token}"}
        response = await alice.http.delete(f"/v1/devices/{first['id']}", headers=headers)
        assert response.status_code == 204 and response.content == b""
        assert await listed_ids(alice) == [second["id"]]

        again = await alice.http.delete(f"/v1/devices/{first['id']}", headers=headers)
        assert again.status_code == 204, "revoking a revoked device is a no-op"
        comeback = await refused(alice, phone.body(user_id))
        assert (comeback.status, comeback.code) == (409, "device_key_taken")
    finally:
        await alice.close()


async def test_other_users_devices_are_not_found(sqlite_node: ServerProcess) -> None:
    """Bob cannot see or revoke Alice's device: 404 device_not_found, as for an unknown id."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    bob = await signed_in_client(sqlite_node, "bob", connect=False)
    try:
        created = await register(alice, NewDevice.generate().body(alice.user_id or ""))
        assert await listed_ids(bob) == []
        for device_id in (created["id"], str(uuid.uuid4())):
            with pytest.raises(ParleyApiError) as caught:
                await bob.request("DELETE", f"/v1/devices/{device_id}")
            assert (caught.value.status, caught.value.code) == (404, "device_not_found")
        with pytest.raises(ParleyApiError) as malformed:
            await bob.request("DELETE", "/v1/devices/not-a-uuid")
        assert (malformed.value.status, malformed.value.code) == (422, "invalid_request")
        assert await listed_ids(alice) == [created["id"]]
    finally:
        await alice.close()
        await bob.close()


async def test_twenty_first_active_device_is_refused(sqlite_node: ServerProcess) -> None:
    """Twenty active devices are allowed; the 21st is 409 too_many_devices until one is revoked."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        user_id = alice.user_id or ""
        created = [
            await register(alice, NewDevice.generate().body(user_id, name=f"d{i}"))
            for i in range(20)
        ]
        error = await refused(alice, NewDevice.generate().body(user_id))
        assert (error.status, error.code) == (409, "too_many_devices")
        assert len(await listed_ids(alice)) == 20

        await alice.request("DELETE", f"/v1/devices/{created[0]['id']}")
        await register(alice, NewDevice.generate().body(user_id))
        assert len(await listed_ids(alice)) == 20
    finally:
        await alice.close()


async def test_device_from_one_node_is_listed_and_verifies_on_the_other(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """Registered on node 1, the device is listed on node 2 and verifies with node 2's CA key."""
    node1, node2 = cluster
    alice = await signed_in_client(node1, "alice", connect=False)
    try:
        created = await register(alice, NewDevice.generate().body(alice.user_id or ""))
        async with httpx.AsyncClient(base_url=node2.url) as http:
            response = await http.get(
                "/v1/devices", headers={"Authorization": f"Bearer {alice.access_token}"}
            )
            ca2 = (await http.get("/v1/ca")).json()
        assert response.status_code == 200
        assert [d["id"] for d in response.json()["devices"]] == [created["id"]]
        async with httpx.AsyncClient(base_url=node1.url) as http:
            ca1 = (await http.get("/v1/ca")).json()
        assert ca1 == ca2, "nodes share the CA key"
        ca_key = Ed25519PublicKey.from_public_bytes(unb64url(ca2["public_key"]))
        listed = response.json()["devices"][0]
        verify_certificate(ca_key, DeviceCertificate.from_dict(listed["certificate"]))
    finally:
        await alice.close()


async def test_parallel_registrations_across_nodes_respect_the_limit(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """24 registrations at once over both nodes (PostgreSQL): exactly 20 succeed, 4 are 409."""
    node1, node2 = cluster
    alice = await signed_in_client(node1, "alice", connect=False)
    headers = {"Authorization": f"Bearer {alice.access_token}"}
    try:
        user_id = alice.user_id or ""
        bodies = [NewDevice.generate().body(user_id, name=f"p{i}") for i in range(24)]
        async with (
            httpx.AsyncClient(base_url=node1.url, headers=headers) as http1,
            httpx.AsyncClient(base_url=node2.url, headers=headers) as http2,
        ):
            responses = await asyncio.gather(
                *(
                    (http1, http2)[i % 2].post("/v1/devices", json=body)
                    for i, body in enumerate(bodies)
                )
            )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 20 + [409] * 4, [r.text for r in responses]
        codes = {r.json()["error"]["code"] for r in responses if r.status_code == 409}
        assert codes == {"too_many_devices"}
        assert len(await listed_ids(alice)) == 20
    finally:
        await alice.close()


async def test_one_key_sent_to_both_nodes_at_once_registers_once(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """The same signing key raced through both nodes: one 201, the rest 409 device_key_taken."""
    node1, node2 = cluster
    alice = await signed_in_client(node1, "alice", connect=False)
    headers = {"Authorization": f"Bearer {alice.access_token}"}
    try:
        body = NewDevice.generate().body(alice.user_id or "")
        async with (
            httpx.AsyncClient(base_url=node1.url, headers=headers) as http1,
            httpx.AsyncClient(base_url=node2.url, headers=headers) as http2,
        ):
            responses = await asyncio.gather(
                *((http1, http2)[i % 2].post("/v1/devices", json=body) for i in range(6))
            )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 5, [r.text for r in responses]
        codes = {r.json()["error"]["code"] for r in responses if r.status_code == 409}
        assert codes == {"device_key_taken"}
        assert len(await listed_ids(alice)) == 1
    finally:
        await alice.close()

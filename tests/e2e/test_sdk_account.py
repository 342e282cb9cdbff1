"""The Python SDK drives the identity features end to end."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from client import ParleyClient
from crypto.ca import DeviceCertificate, verify_certificate
from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess


async def test_sdk_wallet_sign_in_link_device_sessions_logout(sqlite_node: ServerProcess) -> None:
    """Through the SDK: Ethereum sign-in, link to a phone account, a certified device, logout."""
    wallet = Account.create()
    sdk = ParleyClient(sqlite_node.url, device_name="sdk-laptop")
    phone_user = await signed_in_client(sqlite_node, "phone", connect=False)
    try:
        tokens = await sdk.sign_in_with_ethereum(wallet)
        assert tokens["new_user"] is True
        assert [i["display"] for i in await sdk.identities()] == [wallet.address]

        other_wallet = Account.create()
        from client.account import ethereum_signer

        linked = await phone_user.link_wallet(
            "ethereum", other_wallet.address, ethereum_signer(other_wallet)
        )
        assert linked["kind"] == "ethereum" and linked["display"] == other_wallet.address
        second = ParleyClient(sqlite_node.url)
        try:
            again = await second.sign_in_with_ethereum(other_wallet)
            assert again["user_id"] == phone_user.user_id
        finally:
            await second.close()

        device = await sdk.register_device(
            Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
        )
        ca = await sdk.ca()
        ca_key = Ed25519PublicKey.from_public_bytes(
            base64.urlsafe_b64decode(ca["public_key"] + "=" * (-len(ca["public_key"]) % 4))
        )
        verify_certificate(ca_key, DeviceCertificate.from_dict(device["certificate"]))

        sessions = await sdk.sessions()
        assert [s["current"] for s in sessions] == [True]
        await sdk.logout()
        assert sdk.access_token is None
    finally:
        await sdk.close()
        await phone_user.close()

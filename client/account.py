"""The SDK's account methods beyond phone: e-mail, wallets, OpenID Connect, identities,
sessions, devices.

Mixed into :class:`client.ParleyClient`; every method is one HTTP call (or a
challenge-sign-verify round trip) and raises ``ParleyApiError`` on an error answer.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from crypto.devices import device_proof_payload

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

# Signs the challenge text and returns the 0x-hex signature (wallet, HSM, test key...).
MessageSigner = Callable[[str], str]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


class AccountMethods:
    """HTTP calls for e-mail + password, wallets, identities, sessions and devices."""

    # The verifier of the OpenID Connect flow this client started last ("" before one).
    oidc_verifier: str = ""

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

        def _store_tokens(self, tokens: dict[str, Any]) -> None: ...

        base_url: str
        device_name: str
        user_id: str | None
        access_token: str | None
        refresh_token: str | None

    # -- e-mail + password ----------------------------------------------------

    async def register_with_email(
        self, *, login: str, password: str, email: str, first_name: str = "", last_name: str = ""
    ) -> dict[str, Any]:
        body = {
            "login": login,
            "password": password,
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
        }
        result: dict[str, Any] = await self.request(
            "POST", "/v1/auth/email/register", json=body, auth=False
        )
        return result

    async def verify_email(self, token: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "/v1/auth/email/verify", json={"token": token}, auth=False
        )
        return result

    async def resend_verification_email(self, email: str) -> dict[str, Any]:
        """Ask for a fresh confirmation link; the answer is the same whether or not one is sent."""
        result: dict[str, Any] = await self.request(
            "POST", "/v1/auth/email/verify/resend", json={"email": email}, auth=False
        )
        return result

    async def sign_in_with_password(self, identifier: str, password: str) -> dict[str, Any]:
        tokens: dict[str, Any] = await self.request(
            "POST",
            "/v1/auth/email/login",
            json={"identifier": identifier, "password": password, "device_name": self.device_name},
            auth=False,
        )
        self._store_tokens(tokens)
        return tokens

    async def request_password_reset(self, email: str) -> None:
        await self.request(
            "POST", "/v1/auth/email/password-reset", json={"email": email}, auth=False
        )

    async def reset_password(self, token: str, password: str) -> None:
        await self.request(
            "POST",
            "/v1/auth/email/password-reset/confirm",
            json={"token": token, "password": password},
            auth=False,
        )

    async def change_email(self, email: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/v1/me/email", json={"email": email})
        return result

    async def set_password(self, new_password: str, current_password: str | None = None) -> None:
        body: dict[str, Any] = {"new_password": new_password}
        if current_password is not None:
            body["current_password"] = current_password
        await self.request("PUT", "/v1/me/password", json=body)

    # -- wallets ----------------------------------------------------------------

    async def sign_in_with_wallet(
        self, chain: str, address: str, sign: MessageSigner, *, chain_id: int | None = None
    ) -> dict[str, Any]:
        """Challenge, sign with ``sign``, verify: a session for the wallet's account."""
        body: dict[str, Any] = {"chain": chain, "address": address}
        if chain_id is not None:
            body["chain_id"] = chain_id
        challenge = await self.request("POST", "/v1/auth/wallet/challenge", json=body, auth=False)
        tokens: dict[str, Any] = await self.request(
            "POST",
            "/v1/auth/wallet/verify",
            json={
                "message": challenge["message"],
                "signature": sign(challenge["message"]),
                "device_name": self.device_name,
            },
            auth=False,
        )
        self._store_tokens(tokens)
        return tokens

    async def sign_in_with_ethereum(
        self, account: LocalAccount, *, chain_id: int | None = None
    ) -> dict[str, Any]:
        """Sign-In with Ethereum (EIP-4361) using an eth-account key."""
        return await self.sign_in_with_wallet(
            "ethereum", account.address, ethereum_signer(account), chain_id=chain_id
        )

    async def link_wallet(self, chain: str, address: str, sign: MessageSigner) -> dict[str, Any]:
        """Prove a wallet and link it to the signed-in account."""
        challenge = await self.request(
            "POST", "/v1/me/identities/wallet/challenge", json={"chain": chain, "address": address}
        )
        result: dict[str, Any] = await self.request(
            "POST",
            "/v1/me/identities/wallet",
            json={"message": challenge["message"], "signature": sign(challenge["message"])},
        )
        return result

    # -- OpenID Connect -----------------------------------------------------------

    async def oidc_providers(self) -> list[dict[str, Any]]:
        """The providers this server signs in with: ``[{slug, display_name}]``."""
        result = await self.request("GET", "/v1/auth/oidc/providers", auth=False)
        return list(result["providers"])

    def oidc_sign_in_url(self, provider: str, return_to: str) -> str:
        """The URL to open in the person's browser to sign in with ``provider``.

        The browser comes back to ``return_to`` with ``#parley_code=...`` (pass it
        to :meth:`exchange_oidc_code`) or ``#parley_error=<code>``. It is opened
        in the browser, not fetched here: the sign-in is bound to that browser.
        """
        query = urlencode({"return_to": return_to, "app_challenge": self._new_oidc_challenge()})
        return f"{self.base_url}/v1/auth/oidc/{quote(provider, safe='')}/start?{query}"

    def _new_oidc_challenge(self) -> str:
        # The app's PKCE pair: only this client can spend the code the flow ends with.
        self.oidc_verifier = secrets.token_urlsafe(32)
        digest = hashlib.sha256(self.oidc_verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def exchange_oidc_code(self, code: str) -> dict[str, Any]:
        """Spend the ``parley_code`` of the return URL: a session (the account on first use)."""
        tokens: dict[str, Any] = await self.request(
            "POST",
            "/v1/auth/oidc/exchange",
            json={
                "code": code,
                "app_verifier": self.oidc_verifier,
                "device_name": self.device_name,
            },
            auth=False,
        )
        self._store_tokens(tokens)
        return tokens

    async def start_oidc_link(self, provider: str, return_to: str) -> str:
        """The provider URL that links an identity there to the signed-in account."""
        result = await self.request(
            "POST",
            f"/v1/me/identities/oidc/{quote(provider, safe='')}/start",
            json={"return_to": return_to, "app_challenge": self._new_oidc_challenge()},
        )
        return str(result["authorization_url"])

    async def finish_oidc_link(self, code: str) -> dict[str, Any]:
        """Spend the ``parley_code`` a link came back with: the linked identity."""
        result: dict[str, Any] = await self.request(
            "POST",
            "/v1/me/identities/oidc/finish",
            json={"code": code, "app_verifier": self.oidc_verifier},
        )
        return result

    # -- identities and sessions -------------------------------------------------

    async def identities(self) -> list[dict[str, Any]]:
        result = await self.request("GET", "/v1/me/identities")
        return list(result["identities"])

    async def unlink_identity(self, identity_id: str) -> None:
        await self.request("DELETE", f"/v1/me/identities/{identity_id}")

    async def sessions(self) -> list[dict[str, Any]]:
        result = await self.request("GET", "/v1/sessions")
        return list(result["sessions"])

    async def revoke_session(self, session_id: str) -> None:
        await self.request("DELETE", f"/v1/sessions/{session_id}")

    async def logout(self) -> None:
        await self.request("POST", "/v1/auth/logout")
        self.access_token = None
        self.refresh_token = None

    # -- devices (seed 000's CA) ---------------------------------------------------

    async def register_device(
        self,
        signing_key: Ed25519PrivateKey,
        agreement_key: X25519PrivateKey,
        *,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Register this device's public keys (with a proof of possession); its certificate."""
        assert self.user_id is not None, "sign in first"
        signing_public = _raw(signing_key.public_key())
        agreement_public = _raw(agreement_key.public_key())
        proof = signing_key.sign(
            device_proof_payload(self.user_id, signing_public, agreement_public)
        )
        result: dict[str, Any] = await self.request(
            "POST",
            "/v1/devices",
            json={
                "name": name if name is not None else self.device_name,
                "signing_key": _b64url(signing_public),
                "agreement_key": _b64url(agreement_public),
                "proof": _b64url(proof),
            },
        )
        return result

    async def ca(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/ca", auth=False)
        return result


def ethereum_signer(account: LocalAccount) -> MessageSigner:
    """An EIP-191 personal_sign signer for an eth-account key."""
    from eth_account.messages import encode_defunct

    def sign(message: str) -> str:
        return "0x" + account.sign_message(
            encode_defunct(text=message)
        ).signature.hex().removeprefix("0x")

    return sign

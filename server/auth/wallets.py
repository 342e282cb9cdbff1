"""Wallet sign-in and linking (seeds 003, 004): challenge, signature, session.

Ethereum accounts sign an EIP-4361 (Sign-In with Ethereum) message, checked by
EIP-191 recovery; Substrate/CENNZnet accounts sign a plain challenge with their
ed25519 or sr25519 key, named by an SS58 address. The server writes every
message itself and stores it with its nonce (seed 004's ``auth_pk_challenge``),
so verification needs no trust in the text a client sends back: it must be the
stored text exactly, unexpired and unused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from config.errors import AuthenticationError, InvalidRequestError
from config.settings import AuthSettings, split_list
from crypto.wallets import (
    SiweMessage,
    WalletSignatureError,
    decode_ss58,
    encode_ss58,
    eth_signed_by,
    new_nonce,
    normalize_eth_address,
    parse_siwe_message,
    parse_substrate_challenge,
    substrate_challenge_text,
    verify_substrate_signature,
)
from storage import sql
from storage.models import WalletChallenge

SUBSTRATE_TITLE = "Parley Authentication"
_SIWE_ADDRESS_AND_NONCE = re.compile(
    r"\A[^\n]{1,255} wants you to sign in with your Ethereum account:\n(0x[0-9a-fA-F]{40})\n"
    r"(?:[^\n]*\n){4,6}Nonce: ([A-Za-z0-9]{8,64})\n"
)
SIGN_IN = "sign_in"
LINK = "link"
_STATEMENTS = {
    SIGN_IN: "Sign in to Parley.",
    LINK: "Link this account to your Parley account.",
}


class InvalidChallengeError(AuthenticationError):
    code = "invalid_challenge"


@dataclass(frozen=True)
class Challenge:
    message: str
    nonce: str
    expires_at: datetime


@dataclass(frozen=True)
class ProvenWallet:
    """A wallet whose owner just proved control: the identity to sign in or link."""

    kind: str  # ethereum | substrate
    value: str  # identity key: lower-case 0x address, or 0x + public key hex
    display: str  # EIP-55 address, or the SS58 address


class WalletProofService:
    def __init__(
        self, settings: AuthSettings, public_url: str, tip_chain_id: int | None = None
    ) -> None:
        self._settings = settings
        self._uri = public_url
        self._domain = urlsplit(public_url).netloc
        self._chain_ids = {int(c) for c in split_list(settings.ethereum_chain_ids)}
        if tip_chain_id is not None:
            # A wallet set to the tip chain signs in and links without switching networks.
            self._chain_ids.add(tip_chain_id)
        prefixes = split_list(settings.substrate_ss58_prefixes)
        self._ss58_prefixes = {int(p) for p in prefixes} if prefixes else None

    async def challenge(
        self, *, chain: str, address: str, chain_id: int | None, purpose: str, user_id: str | None
    ) -> Challenge:
        """Write and store the message the wallet is to sign."""
        now = datetime.now(UTC).replace(microsecond=0)
        expires = now + timedelta(seconds=self._settings.wallet_challenge_ttl)
        nonce = new_nonce()
        if chain == "ethereum":
            display = normalize_eth_address(address)
            value = display.lower()
            chain_id = chain_id if chain_id is not None else min(self._chain_ids)
            if chain_id not in self._chain_ids:
                raise InvalidRequestError(
                    f"chain_id: not accepted here (accepted: {sorted(self._chain_ids)})",
                    code="unsupported_chain",
                )
            message = SiweMessage(
                domain=self._domain,
                address=display,
                statement=_STATEMENTS[purpose],
                uri=self._uri,
                version="1",
                chain_id=chain_id,
                nonce=nonce,
                issued_at=now,
                expiration_time=expires,
            ).to_text()
        else:
            prefix, public_key = decode_ss58(address, allowed_prefixes=self._ss58_prefixes)
            display = encode_ss58(public_key, prefix)
            value = "0x" + public_key.hex()
            message = substrate_challenge_text(self._domain, display, nonce, now, expires)
        await WalletChallenge.create(
            nonce=nonce,
            chain=chain,
            address=value,
            display=display,
            message=message,
            purpose=purpose,
            user_id=user_id,
            expires_at=expires,
        )
        return Challenge(message=message, nonce=nonce, expires_at=expires)

    async def prove(
        self, message: str, signature: str, *, purpose: str, user_id: str | None
    ) -> ProvenWallet:
        """Check a signed challenge and spend it; the wallet it proves.

        The signature is checked against the account the message names, then
        one statement spends the challenge only if this exact text was issued
        here, for this purpose (and user), and is unexpired and unused.
        """
        if message.startswith(SUBSTRATE_TITLE):
            parsed = parse_substrate_challenge(message)
            nonce = parsed["nonce"]
            _, public_key = decode_ss58(parsed["address"], allowed_prefixes=self._ss58_prefixes)
            _verify_either_scheme(public_key, message.encode(), signature)
        else:
            # The stored text is compared in full below, so only the address and
            # nonce are needed here; the full parser runs only to explain a bad text.
            fast = _SIWE_ADDRESS_AND_NONCE.match(message)
            if fast is None:
                siwe = parse_siwe_message(message)
                address, nonce = siwe.address, siwe.nonce
            else:
                address, nonce = fast.group(1), fast.group(2)
            if not eth_signed_by(message, signature, address):
                raise WalletSignatureError("signature: signed by another account")
        now = datetime.now(UTC)
        params: list[object] = [now, nonce, message, purpose, now]
        owner = "user_id IS NULL"
        if user_id is not None:
            owner = "user_id = ?"
            params.append(user_id)
        # `owner` is one of two constant strings; every value is a parameter.
        row = await sql.fetch_one(
            "UPDATE wallet_challenges SET used_at = ?"  # noqa: S608
            " WHERE nonce = ? AND message = ? AND purpose = ? AND used_at IS NULL"
            f" AND expires_at > ? AND {owner} RETURNING chain, address, display",
            params,
        )
        if row is None:
            raise InvalidChallengeError(
                "this message was not issued here, has expired or was already used; "
                "ask for a new challenge"
            )
        return ProvenWallet(kind=row["chain"], value=row["address"], display=row["display"])


def _verify_either_scheme(public_key: bytes, message: bytes, signature: str) -> None:
    # Substrate accounts are sr25519 (polkadot.js' default) or ed25519; an
    # address does not say which, and a signature verifies under at most one.
    try:
        verify_substrate_signature(public_key, message, signature, scheme="sr25519")
    except WalletSignatureError:
        verify_substrate_signature(public_key, message, signature, scheme="ed25519")

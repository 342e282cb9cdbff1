"""Wallet sign-in and linked identities on real nodes, signed with keys made in the test.

Seeds 003 and 004: the node writes the message, a real Ethereum (secp256k1),
ed25519 or sr25519 key signs it here, and only the address and signature
travel. "Nothing created" is checked by counting the node's users, identities
and sessions in its SQLite file, and by the wallet's next sign-in being new.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sr25519
from eth_account import Account
from eth_account.messages import encode_defunct
from nacl.signing import SigningKey

from client import ParleyClient
from crypto.wallets import (
    InvalidAddressError,
    SiweMessage,
    decode_ss58,
    encode_ss58,
    new_nonce,
    substrate_challenge_text,
)
from tests.e2e.conftest import BASE_ENV
from tests.support.clients import signed_in_client
from tests.support.phones import fresh_phone
from tests.support.server import ServerProcess

# Not the address the node listens on: the message must name where people reach it.
PUBLIC_URL = "https://chat.parley.test"
DOMAIN = "chat.parley.test"
SS58_GENERIC = 42

SIGN_IN_CHALLENGE = "/v1/auth/wallet/challenge"
SIGN_IN_VERIFY = "/v1/auth/wallet/verify"
LINK_CHALLENGE = "/v1/me/identities/wallet/challenge"
LINK_VERIFY = "/v1/me/identities/wallet"
IDENTITIES = "/v1/me/identities"


@dataclass(frozen=True)
class Wallet:
    """A key pair made here; only its address and its signatures leave the test."""

    chain: str  # ethereum | substrate
    address: str  # EIP-55 or SS58 (generic prefix 42)
    sign_bytes: Callable[[str], bytes]

    def sign(self, message: str) -> str:
        return "0x" + self.sign_bytes(message).hex()


def eth_wallet() -> Wallet:
    account = Account.create()

    def sign(text: str) -> bytes:
        # EIP-191 personal_sign, as MetaMask does for a SIWE message.
        return bytes(account.sign_message(encode_defunct(text=text)).signature)

    return Wallet("ethereum", str(account.address), sign)


def ed25519_wallet(*, wrap: bool = False) -> Wallet:
    key = SigningKey.generate()

    def sign(text: str) -> bytes:
        return bytes(key.sign(_payload(text, wrap)).signature)

    return Wallet("substrate", encode_ss58(bytes(key.verify_key), SS58_GENERIC), sign)


def sr25519_wallet(*, wrap: bool = False) -> Wallet:
    public, private = sr25519.pair_from_seed(os.urandom(32))

    def sign(text: str) -> bytes:
        return bytes(sr25519.sign((public, private), _payload(text, wrap)))

    return Wallet("substrate", encode_ss58(bytes(public), SS58_GENERIC), sign)


def _payload(text: str, wrap: bool) -> bytes:
    # polkadot.js signRaw signs <Bytes>message</Bytes>; other signers the bare text.
    data = text.encode()
    return b"<Bytes>" + data + b"</Bytes>" if wrap else data


def bearer(client: ParleyClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.access_token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def challenge(
    http: httpx.AsyncClient,
    wallet: Wallet,
    *,
    address: str | None = None,
    client: ParleyClient | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A sign-in challenge, or a link challenge for ``client``'s account."""
    body = {"chain": wallet.chain, "address": address or wallet.address, **extra}
    if client is None:
        response = await http.post(SIGN_IN_CHALLENGE, json=body)
    else:
        response = await http.post(LINK_CHALLENGE, json=body, headers=bearer(client))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def verify(http: httpx.AsyncClient, message: str, signature: str) -> httpx.Response:
    return await http.post(SIGN_IN_VERIFY, json={"message": message, "signature": signature})


async def link(
    http: httpx.AsyncClient, client: ParleyClient, message: str, signature: str
) -> httpx.Response:
    return await http.post(
        LINK_VERIFY, json={"message": message, "signature": signature}, headers=bearer(client)
    )


async def sign_in(http: httpx.AsyncClient, wallet: Wallet) -> dict[str, Any]:
    """The whole sign-in: challenge, sign, verify; the token pair."""
    issued = await challenge(http, wallet)
    response = await verify(http, issued["message"], wallet.sign(issued["message"]))
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def identities(http: httpx.AsyncClient, access_token: str) -> list[dict[str, Any]]:
    response = await http.get(IDENTITIES, headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["identities"]
    return listed


def one_char_changed(before: str, after: str) -> str:
    assert (
        len(before) == len(after) and sum(a != b for a, b in zip(before, after, strict=True)) == 1
    )
    return after


def _count_rows(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {
            table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            for table in ("users", "identities", "sessions")
        }


async def row_counts(node: ServerProcess) -> dict[str, int]:
    """Users, identities and sessions in the node's database."""
    path = Path(node.env["PARLEY_DATABASE_URL"].removeprefix("sqlite://"))
    return await asyncio.to_thread(_count_rows, path)


@pytest.fixture(scope="module")
def wallet_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A SQLite node whose public URL differs from where it listens; chain id 1 only."""
    root = tmp_path_factory.mktemp("wallet-node")
    node = ServerProcess(
        {
            **BASE_ENV,
            "PARLEY_DATABASE_URL": f"sqlite://{root}/parley.sqlite3",
            "PARLEY_AUTH_KEYS_DIR": str(root / "keys"),
            "PARLEY_SERVER_PUBLIC_URL": PUBLIC_URL,
            "PARLEY_AUTH_ETHEREUM_CHAIN_IDS": "1",
        },
        name="wallet-node",
    ).start()
    yield node
    node.stop()


@pytest.fixture
async def http(wallet_node: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=wallet_node.url, timeout=15) as client:
        yield client


@pytest.fixture
async def phone_user(wallet_node: ServerProcess) -> AsyncIterator[ParleyClient]:
    client = await signed_in_client(wallet_node, "phone-user", connect=False)
    try:
        yield client
    finally:
        await client.close()


# --- signing in ---------------------------------------------------------------------------


async def test_ethereum_sign_in_creates_then_finds_the_account(http: httpx.AsyncClient) -> None:
    """SIWE over EIP-191: the first sign-in creates the account, the next one finds it."""
    wallet = eth_wallet()
    lower, checksummed = wallet.address.lower(), wallet.address
    assert lower != checksummed
    first_issued = await challenge(http, wallet, address=lower)
    second_issued = await challenge(http, wallet, address=checksummed)
    for issued in (first_issued, second_issued):
        lines = issued["message"].split("\n")
        assert lines[0] == f"{DOMAIN} wants you to sign in with your Ethereum account:"
        assert lines[1] == checksummed
        assert f"URI: {PUBLIC_URL}" in lines and "Chain ID: 1" in lines
        assert f"Nonce: {issued['nonce']}" in lines
    assert first_issued["nonce"] != second_issued["nonce"]

    first = await verify(http, first_issued["message"], wallet.sign(first_issued["message"]))
    assert first.status_code == 200, first.text
    assert first.json()["new_user"] is True
    second = await verify(http, second_issued["message"], wallet.sign(second_issued["message"]))
    assert second.status_code == 200, second.text
    assert second.json()["new_user"] is False
    assert second.json()["user_id"] == first.json()["user_id"]
    assert second.json()["session_id"] != first.json()["session_id"]

    listed = await identities(http, second.json()["access_token"])
    assert [(i["kind"], i["display"], i["verified"]) for i in listed] == [
        ("ethereum", checksummed, True)
    ]


@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "bytes-wrapped"])
@pytest.mark.parametrize(
    "make_wallet", [ed25519_wallet, sr25519_wallet], ids=["ed25519", "sr25519"]
)
async def test_substrate_sign_in(
    http: httpx.AsyncClient, make_wallet: Callable[..., Wallet], wrap: bool
) -> None:
    """An SS58 account signs the challenge (bare or <Bytes>-wrapped) and signs in, twice."""
    wallet = make_wallet(wrap=wrap)
    issued = await challenge(http, wallet)
    lines = issued["message"].split("\n")
    assert lines[:3] == [
        "Parley Authentication",
        f"{DOMAIN} wants you to sign in with your Substrate account:",
        wallet.address,
    ]
    assert f"Nonce: {issued['nonce']}" in lines

    first = await verify(http, issued["message"], wallet.sign(issued["message"]))
    assert first.status_code == 200, first.text
    assert first.json()["new_user"] is True
    again = await sign_in(http, wallet)
    assert again["new_user"] is False and again["user_id"] == first.json()["user_id"]
    listed = await identities(http, again["access_token"])
    assert [(i["kind"], i["display"]) for i in listed] == [("substrate", wallet.address)]


# --- refusals -----------------------------------------------------------------------------


async def test_replayed_signature_is_refused(
    http: httpx.AsyncClient, wallet_node: ServerProcess
) -> None:
    """A message and signature that already signed in are refused the second time."""
    wallet = eth_wallet()
    issued = await challenge(http, wallet)
    signature = wallet.sign(issued["message"])
    assert (await verify(http, issued["message"], signature)).status_code == 200
    before = await row_counts(wallet_node)
    assert_error(await verify(http, issued["message"], signature), 401, "invalid_challenge")
    assert await row_counts(wallet_node) == before


@pytest.mark.parametrize(
    ("make_wallet", "make_other"),
    [(eth_wallet, eth_wallet), (sr25519_wallet, sr25519_wallet), (ed25519_wallet, sr25519_wallet)],
    ids=["ethereum", "sr25519", "ed25519-by-sr25519"],
)
async def test_signature_by_another_key_is_refused(
    http: httpx.AsyncClient,
    wallet_node: ServerProcess,
    make_wallet: Callable[[], Wallet],
    make_other: Callable[[], Wallet],
) -> None:
    """A valid signature by another key is invalid_signature; the wallet stays unregistered."""
    wallet, other = make_wallet(), make_other()
    issued = await challenge(http, wallet)
    before = await row_counts(wallet_node)
    response = await verify(http, issued["message"], other.sign(issued["message"]))
    assert_error(response, 401, "invalid_signature")
    assert await row_counts(wallet_node) == before
    assert (await sign_in(http, wallet))["new_user"] is True


def _change_nonce(message: str, nonce: str) -> str:
    last = "a" if nonce[-1] != "a" else "b"
    return message.replace(f"Nonce: {nonce}", f"Nonce: {nonce[:-1]}{last}")


ALTERATIONS: dict[str, Callable[[str, str], str]] = {
    "chain-id": lambda m, n: m.replace("Chain ID: 1\n", "Chain ID: 5\n"),
    "domain": lambda m, n: m.replace(DOMAIN, "chat.parlay.test", 1),
    "nonce": _change_nonce,
    "expiry": lambda m, n: m.replace("Expiration Time: 2", "Expiration Time: 3"),
    "statement": lambda m, n: m.replace("Parley.", "Parley!", 1),
}


@pytest.mark.parametrize(
    ("make_wallet", "alteration"),
    [(eth_wallet, name) for name in ALTERATIONS]
    + [(sr25519_wallet, name) for name in ("domain", "nonce", "expiry")],
)
async def test_altered_message_is_refused(
    http: httpx.AsyncClient,
    wallet_node: ServerProcess,
    make_wallet: Callable[[], Wallet],
    alteration: str,
) -> None:
    """One character changed in an issued message, signed by its wallet, is invalid_challenge."""
    wallet = make_wallet()
    issued = await challenge(http, wallet)
    altered = one_char_changed(
        issued["message"], ALTERATIONS[alteration](issued["message"], issued["nonce"])
    )
    before = await row_counts(wallet_node)
    assert_error(await verify(http, altered, wallet.sign(altered)), 401, "invalid_challenge")
    assert await row_counts(wallet_node) == before
    # The untouched message still works: the refusal did not spend it.
    accepted = await verify(http, issued["message"], wallet.sign(issued["message"]))
    assert accepted.status_code == 200 and accepted.json()["new_user"] is True


@pytest.mark.parametrize("chain", ["ethereum", "substrate"])
async def test_message_never_issued_is_refused(
    http: httpx.AsyncClient, wallet_node: ServerProcess, chain: str
) -> None:
    """A well-formed message built by the client with its own nonce is invalid_challenge."""
    now = datetime.now(UTC).replace(microsecond=0)
    if chain == "ethereum":
        wallet = eth_wallet()
        forged = SiweMessage(
            domain=DOMAIN,
            address=wallet.address,
            statement="Sign in to Parley.",
            uri=PUBLIC_URL,
            version="1",
            chain_id=1,
            nonce=new_nonce(),
            issued_at=now,
            expiration_time=now + timedelta(minutes=5),
        ).to_text()
    else:
        wallet = sr25519_wallet()
        forged = substrate_challenge_text(
            DOMAIN, wallet.address, new_nonce(), now, now + timedelta(minutes=5)
        )
    before = await row_counts(wallet_node)
    assert_error(await verify(http, forged, wallet.sign(forged)), 401, "invalid_challenge")
    assert await row_counts(wallet_node) == before


async def test_bad_eip55_checksum_is_invalid_address(http: httpx.AsyncClient) -> None:
    """A mixed-case address whose case breaks the EIP-55 checksum is 422 invalid_address."""
    address = eth_wallet().address
    index = next(i for i, ch in enumerate(address[2:], start=2) if ch.isalpha())
    broken = address[:index] + address[index].swapcase() + address[index + 1 :]
    digits = broken[2:]
    assert digits not in (digits.lower(), digits.upper())  # still mixed case
    response = await http.post(SIGN_IN_CHALLENGE, json={"chain": "ethereum", "address": broken})
    assert_error(response, 422, "invalid_address")


async def test_bad_ss58_checksum_is_invalid_address(http: httpx.AsyncClient) -> None:
    """An SS58 address with a wrong checksum is 422 invalid_address."""
    address = sr25519_wallet().address
    for index in range(len(address) - 1, 0, -1):
        replacement = "2" if address[index] != "2" else "3"
        broken = address[:index] + replacement + address[index + 1 :]
        try:
            decode_ss58(broken)
        except InvalidAddressError as exc:  # the broken checksum, not another problem
            if "checksum" in exc.message:
                break
    else:
        raise AssertionError("no one-character change broke only the checksum")
    response = await http.post(SIGN_IN_CHALLENGE, json={"chain": "substrate", "address": broken})
    assert_error(response, 422, "invalid_address")
    assert "checksum" in response.json()["error"]["message"]


async def test_unsupported_chain_id_is_refused(http: httpx.AsyncClient) -> None:
    """chain_id 5 on a node that accepts only 1 is 422 unsupported_chain."""
    body = {"chain": "ethereum", "address": eth_wallet().address, "chain_id": 5}
    assert_error(await http.post(SIGN_IN_CHALLENGE, json=body), 422, "unsupported_chain")
    body["chain_id"] = 1
    assert (await http.post(SIGN_IN_CHALLENGE, json=body)).status_code == 200


@pytest.mark.parametrize(
    "signature",
    ["0x" + "zz" * 65, "ab" * 65, "0x" + "ab" * 10, "0x" + "ab" * 66, "", "0x"],
    ids=["not-hex", "no-0x", "short", "long", "empty", "bare-0x"],
)
async def test_malformed_signature_is_invalid_request(
    http: httpx.AsyncClient, wallet_node: ServerProcess, signature: str
) -> None:
    """A signature that is not 0x-hex of 64 or 65 bytes is 422 before anything is checked."""
    wallet = eth_wallet()
    issued = await challenge(http, wallet)
    before = await row_counts(wallet_node)
    response = await verify(http, issued["message"], signature)
    assert_error(response, 422, "invalid_request")
    assert "signature" in response.json()["error"]["message"]
    assert await row_counts(wallet_node) == before
    accepted = await verify(http, issued["message"], wallet.sign(issued["message"]))
    assert accepted.status_code == 200


async def test_substrate_length_signature_for_ethereum_is_refused(
    http: httpx.AsyncClient, wallet_node: ServerProcess
) -> None:
    """A 64-byte signature on an Ethereum message is refused as invalid_signature."""
    wallet = eth_wallet()
    issued = await challenge(http, wallet)
    truncated = wallet.sign(issued["message"])[:-2]
    before = await row_counts(wallet_node)
    assert_error(await verify(http, issued["message"], truncated), 401, "invalid_signature")
    assert await row_counts(wallet_node) == before


async def test_challenge_purposes_do_not_cross(
    http: httpx.AsyncClient, wallet_node: ServerProcess, phone_user: ParleyClient
) -> None:
    """Sign-in challenges do not link, link challenges do not sign in or link another account."""
    wallet = eth_wallet()
    sign_in_issued = await challenge(http, wallet)
    link_issued = await challenge(http, wallet, client=phone_user)
    other = await signed_in_client(wallet_node, "other", connect=False)
    try:
        before = await row_counts(wallet_node)
        signed = wallet.sign(sign_in_issued["message"])
        assert_error(
            await link(http, phone_user, sign_in_issued["message"], signed),
            401,
            "invalid_challenge",
        )
        signed = wallet.sign(link_issued["message"])
        assert_error(await verify(http, link_issued["message"], signed), 401, "invalid_challenge")
        assert_error(
            await link(http, other, link_issued["message"], signed), 401, "invalid_challenge"
        )
        assert await row_counts(wallet_node) == before
        assert [i["kind"] for i in await identities(http, phone_user.access_token or "")] == [
            "phone"
        ]
        # Each still works where it belongs.
        linked = await link(http, phone_user, link_issued["message"], signed)
        assert linked.status_code == 200, linked.text
        accepted = await verify(
            http, sign_in_issued["message"], wallet.sign(sign_in_issued["message"])
        )
        assert accepted.status_code == 200
        assert accepted.json()["user_id"] == phone_user.user_id
    finally:
        await other.close()


# --- linking and unlinking ----------------------------------------------------------------


async def test_phone_user_links_a_wallet_and_signs_in_with_it(
    http: httpx.AsyncClient, phone_user: ParleyClient
) -> None:
    """A linked Ethereum wallet is listed and then signs in to that same account."""
    wallet = eth_wallet()
    issued = await challenge(http, wallet, client=phone_user)
    assert "Link this account to your Parley account." in issued["message"].split("\n")
    response = await link(http, phone_user, issued["message"], wallet.sign(issued["message"]))
    assert response.status_code == 200, response.text
    linked = response.json()
    assert (linked["kind"], linked["display"], linked["verified"]) == (
        "ethereum",
        wallet.address,
        True,
    )
    listed = await identities(http, phone_user.access_token or "")
    assert sorted(i["kind"] for i in listed) == ["ethereum", "phone"]
    assert linked["id"] in {i["id"] for i in listed}

    tokens = await sign_in(http, wallet)
    assert tokens["user_id"] == phone_user.user_id and tokens["new_user"] is False


async def test_wallet_of_another_account_is_identity_taken(
    http: httpx.AsyncClient, wallet_node: ServerProcess, phone_user: ParleyClient
) -> None:
    """Linking a wallet that already signs in to another account is 409 identity_taken."""
    wallet = sr25519_wallet()
    owner = await sign_in(http, wallet)
    issued = await challenge(http, wallet, client=phone_user)
    before = await row_counts(wallet_node)
    response = await link(http, phone_user, issued["message"], wallet.sign(issued["message"]))
    assert_error(response, 409, "identity_taken")
    assert await row_counts(wallet_node) == before
    assert [i["kind"] for i in await identities(http, phone_user.access_token or "")] == ["phone"]
    assert (await sign_in(http, wallet))["user_id"] == owner["user_id"]


async def test_phone_number_is_linked_with_a_texted_code(
    http: httpx.AsyncClient, wallet_node: ServerProcess, phone_user: ParleyClient
) -> None:
    """A second number is linked by the code texted to it and listed on the account."""
    phone = fresh_phone()
    start = await http.post(
        f"{IDENTITIES}/phone/start", json={"phone": phone}, headers=bearer(phone_user)
    )
    assert start.status_code == 200, start.text
    code = await asyncio.to_thread(wallet_node.next_sms_code, start.json()["phone"])
    response = await http.post(
        f"{IDENTITIES}/phone/verify",
        json={"request_id": start.json()["request_id"], "code": code},
        headers=bearer(phone_user),
    )
    assert response.status_code == 200, response.text
    assert (response.json()["kind"], response.json()["display"]) == ("phone", phone)
    listed = await identities(http, phone_user.access_token or "")
    phones = {i["display"] for i in listed if i["kind"] == "phone"}
    assert len(phones) == 2 and phone in phones
    assert phones == set((await phone_user.me())["phones"])


async def test_link_and_sign_in_codes_do_not_cross(
    http: httpx.AsyncClient, wallet_node: ServerProcess, phone_user: ParleyClient
) -> None:
    """A link code does not sign in and a sign-in code does not link; neither is burnt."""
    link_phone, sign_in_phone = fresh_phone(), fresh_phone()
    link_start = (
        await http.post(
            f"{IDENTITIES}/phone/start", json={"phone": link_phone}, headers=bearer(phone_user)
        )
    ).json()
    link_code = await asyncio.to_thread(wallet_node.next_sms_code, link_start["phone"])
    sign_in_start = (await http.post("/v1/auth/phone/start", json={"phone": sign_in_phone})).json()
    sign_in_code = await asyncio.to_thread(wallet_node.next_sms_code, sign_in_start["phone"])
    before = await row_counts(wallet_node)

    refused = await http.post(
        "/v1/auth/phone/verify", json={"request_id": link_start["request_id"], "code": link_code}
    )
    assert_error(refused, 401, "invalid_code")
    refused = await http.post(
        f"{IDENTITIES}/phone/verify",
        json={"request_id": sign_in_start["request_id"], "code": sign_in_code},
        headers=bearer(phone_user),
    )
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "identity_not_found"
    assert await row_counts(wallet_node) == before
    assert [i["kind"] for i in await identities(http, phone_user.access_token or "")] == ["phone"]

    linked = await http.post(
        f"{IDENTITIES}/phone/verify",
        json={"request_id": link_start["request_id"], "code": link_code},
        headers=bearer(phone_user),
    )
    assert linked.status_code == 200 and linked.json()["display"] == link_phone
    signed_in = await http.post(
        "/v1/auth/phone/verify",
        json={"request_id": sign_in_start["request_id"], "code": sign_in_code},
    )
    assert signed_in.status_code == 200 and signed_in.json()["new_user"] is True
    assert signed_in.json()["user_id"] != phone_user.user_id


async def test_unlinked_wallet_signs_in_to_a_new_account(
    http: httpx.AsyncClient, phone_user: ParleyClient
) -> None:
    """After DELETE of a linked wallet (204) its next sign-in creates a new account."""
    wallet = ed25519_wallet()
    issued = await challenge(http, wallet, client=phone_user)
    linked = (
        await link(http, phone_user, issued["message"], wallet.sign(issued["message"]))
    ).json()
    assert (await sign_in(http, wallet))["user_id"] == phone_user.user_id

    response = await http.delete(f"{IDENTITIES}/{linked['id']}", headers=bearer(phone_user))
    assert response.status_code == 204, response.text
    assert [i["kind"] for i in await identities(http, phone_user.access_token or "")] == ["phone"]
    tokens = await sign_in(http, wallet)
    assert tokens["new_user"] is True and tokens["user_id"] != phone_user.user_id


async def test_last_verified_identity_cannot_be_removed(http: httpx.AsyncClient) -> None:
    """The one identity of a wallet-only account stays: 409 last_identity."""
    tokens = await sign_in(http, eth_wallet())
    (only,) = await identities(http, tokens["access_token"])
    response = await http.delete(
        f"{IDENTITIES}/{only['id']}", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert_error(response, 409, "last_identity")
    assert await identities(http, tokens["access_token"]) == [only]
    assert (await sign_in(http, eth_wallet()))["new_user"] is True


async def test_identity_of_another_account_is_not_found(
    http: httpx.AsyncClient, phone_user: ParleyClient
) -> None:
    """DELETE of another account's identity id (or an unknown id) is 404; it stays."""
    wallet = eth_wallet()
    owner = await sign_in(http, wallet)
    (theirs,) = await identities(http, owner["access_token"])
    for identity_id in (theirs["id"], str(uuid.uuid4())):
        response = await http.delete(f"{IDENTITIES}/{identity_id}", headers=bearer(phone_user))
        assert_error(response, 404, "identity_not_found")
    assert await identities(http, owner["access_token"]) == [theirs]
    assert (await sign_in(http, wallet))["user_id"] == owner["user_id"]


# --- concurrency and the cluster ----------------------------------------------------------


async def test_concurrent_verifies_sign_in_once(
    http: httpx.AsyncClient, wallet_node: ServerProcess
) -> None:
    """Ten simultaneous verifies of one signed challenge: exactly one 200, one session."""
    wallet = eth_wallet()
    issued = await challenge(http, wallet)
    signature = wallet.sign(issued["message"])
    before = await row_counts(wallet_node)
    clients = [httpx.AsyncClient(base_url=wallet_node.url, timeout=15) for _ in range(10)]
    try:
        responses = await asyncio.gather(
            *(verify(c, issued["message"], signature) for c in clients)
        )
    finally:
        for c in clients:
            await c.aclose()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 9, [r.text for r in responses]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 401} == {
        "invalid_challenge"
    }
    after = await row_counts(wallet_node)
    assert {k: after[k] - before[k] for k in after} == {"users": 1, "identities": 1, "sessions": 1}


async def test_wallet_sign_in_across_nodes(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    """A challenge from node 1 is verified on node 2; the session works on node 1."""
    node1, node2 = cluster
    wallet = sr25519_wallet(wrap=True)
    async with (
        httpx.AsyncClient(base_url=node1.url, timeout=15) as http1,
        httpx.AsyncClient(base_url=node2.url, timeout=15) as http2,
    ):
        issued = await challenge(http1, wallet)
        response = await verify(http2, issued["message"], wallet.sign(issued["message"]))
        assert response.status_code == 200, response.text
        assert response.json()["new_user"] is True
        listed = await identities(http1, response.json()["access_token"])
        assert [(i["kind"], i["display"]) for i in listed] == [("substrate", wallet.address)]
        replay = await verify(http1, issued["message"], wallet.sign(issued["message"]))
        assert_error(replay, 401, "invalid_challenge")


async def test_wallet_link_across_nodes(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    """A link challenge from node 1 links on node 2; the wallet then signs in on node 1."""
    node1, node2 = cluster
    wallet = eth_wallet()
    user = await signed_in_client(node1, "linker", connect=False)
    try:
        async with (
            httpx.AsyncClient(base_url=node1.url, timeout=15) as http1,
            httpx.AsyncClient(base_url=node2.url, timeout=15) as http2,
        ):
            issued = await challenge(http1, wallet, client=user)
            response = await link(http2, user, issued["message"], wallet.sign(issued["message"]))
            assert response.status_code == 200, response.text
            assert response.json()["display"] == wallet.address
            tokens = await sign_in(http1, wallet)
            assert tokens["user_id"] == user.user_id and tokens["new_user"] is False
    finally:
        await user.close()

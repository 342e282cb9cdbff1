"""Wallet sign-in: Ethereum (EIP-4361 over EIP-191) and Substrate/CENNZnet (SS58 keys).

Seeds 003 and 004: the server hands out a challenge text carrying a single-use
nonce and an expiry, the wallet signs it, and the server checks the signature
against the account the text names. This module only builds, parses and
verifies; storing nonces and checking them against the clock belongs to the
service. Every function takes untrusted input and fails only with the
``ParleyError`` subclasses named in its docstring.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypedDict

import base58
import sr25519
from coincurve import PublicKey
from Crypto.Hash import keccak
from eth_utils.address import is_checksum_address, to_checksum_address
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from config.errors import AuthenticationError, InvalidRequestError

MAX_MESSAGE_CHARS: Final = 2048
SIWE_VERSION: Final = "1"
SUBSTRATE_SCHEMES: Final = frozenset({"ed25519", "sr25519"})
SUBSTRATE_STATEMENT: Final = (
    "Sign this message to prove you own the account. It is not a transaction and costs nothing."
)

_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# RFC 3986 authority without userinfo: a host name or IPv4 address, optional port.
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?")
# EIP-4361: "nonce = 8*( ALPHA / DIGIT )"; the upper bound is ours.
_NONCE = re.compile(r"[A-Za-z0-9]{8,128}")
# EIP-4361: "statement = *( reserved / unreserved / " " )" from RFC 3986.
_STATEMENT = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;= ]{1,512}")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[!-~]{1,1000}")
_CHAIN_ID = re.compile(r"[1-9][0-9]{0,18}")
# RFC 3339 date-time (upper-case T and Z only); the offset is converted to UTC.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_SIGNATURE_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_SS58_PREFIX: Final = b"SS58PRE"
_SS58_MAX_CHARS: Final = 64
# The SS58 registry reserves 46 and 47; polkadot.js refuses them too.
_SS58_RESERVED: Final = frozenset({46, 47})
_NONCE_ALPHABET: Final = string.ascii_letters + string.digits


class WalletSignatureError(AuthenticationError):
    code = "invalid_signature"


class InvalidAddressError(InvalidRequestError):
    code = "invalid_address"


def _message_error(text: str) -> InvalidRequestError:
    return InvalidRequestError(text, code="invalid_message")


def new_nonce(length: int = 24) -> str:
    """A CSPRNG nonce of EIP-4361's alphabet (letters and digits); 24 chars is ~142 bits."""
    if not 8 <= length <= 128:
        raise ValueError("nonce length must be 8..128")
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def _format_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    fraction = f".{value.microsecond:06d}" if value.microsecond else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _parse_time(text: str) -> datetime | None:
    if not _RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted by its offset
        return None


def _check_common(domain: object, nonce: object, issued_at: object, expires: object) -> None:
    """Field rules shared by the SIWE message and the Substrate challenge."""
    if not isinstance(domain, str) or not _DOMAIN.fullmatch(domain):
        raise _message_error("domain: not a host name with an optional port")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise _message_error("nonce: must be 8..128 ASCII letters and digits (EIP-4361)")
    if not isinstance(issued_at, datetime) or issued_at.utcoffset() is None:
        raise _message_error("issued_at: not a timezone-aware datetime")
    if not isinstance(expires, datetime) or expires.utcoffset() is None:
        raise _message_error("expiration_time: not a timezone-aware datetime")
    if expires <= issued_at:
        raise _message_error("expiration_time: not after issued_at")


# --- Ethereum --------------------------------------------------------------------------


def normalize_eth_address(text: str) -> str:
    """The EIP-55 checksummed form of ``0x`` + 40 hex digits.

    All-lower and all-upper hex carry no checksum and are accepted; mixed case
    must be a valid EIP-55 checksum, since a wrong one means a mistyped address.
    Raises ``InvalidAddressError``.
    """
    if not isinstance(text, str) or not _HEX_ADDRESS.fullmatch(text):
        raise InvalidAddressError("address: not 0x followed by 40 hex digits")
    digits = text[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(text):
        raise InvalidAddressError("address: mixed case fails the EIP-55 checksum")
    return str(to_checksum_address(text))


@dataclass(frozen=True)
class SiweMessage:
    """An EIP-4361 Sign-In with Ethereum message with the fields Parley uses.

    The optional EIP-4361 fields (Not Before, Request ID, Resources) are not
    used. An empty ``statement`` is rendered as EIP-4361's omitted statement.
    Construction validates every field and raises ``InvalidRequestError``
    (code ``invalid_message``); times are stored in UTC.
    """

    domain: str
    address: str
    statement: str
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime

    def __post_init__(self) -> None:
        _check_common(self.domain, self.nonce, self.issued_at, self.expiration_time)
        if not isinstance(self.address, str) or not _HEX_ADDRESS.fullmatch(self.address):
            raise _message_error("address: not 0x followed by 40 hex digits")
        if not is_checksum_address(self.address):
            # EIP-4361 requires the EIP-55 form; normalize_eth_address gives it.
            raise _message_error("address: not in EIP-55 checksummed form")
        if not isinstance(self.statement, str) or (
            self.statement and not _STATEMENT.fullmatch(self.statement)
        ):
            raise _message_error("statement: not 1..512 RFC 3986 characters on one line")
        if not isinstance(self.uri, str) or not _URI.fullmatch(self.uri):
            raise _message_error("uri: not an absolute URI without spaces")
        if self.version != SIWE_VERSION:
            raise _message_error('version: must be "1" (EIP-4361)')
        chain_id = self.chain_id
        if type(chain_id) is not int or not 1 <= chain_id < 2**63:
            raise _message_error("chain_id: not a positive integer below 2**63")
        object.__setattr__(self, "issued_at", self.issued_at.astimezone(UTC))
        object.__setattr__(self, "expiration_time", self.expiration_time.astimezone(UTC))
        if len(self.to_text()) > MAX_MESSAGE_CHARS:
            raise _message_error(f"message: longer than {MAX_MESSAGE_CHARS} characters")

    def to_text(self) -> str:
        """The exact text the wallet signs (EIP-4361 layout, LF line ends, no final LF)."""
        statement = f"{self.statement}\n" if self.statement else ""
        return (
            f"{self.domain} wants you to sign in with your Ethereum account:\n"
            f"{self.address}\n\n{statement}\n"
            f"URI: {self.uri}\n"
            f"Version: {self.version}\n"
            f"Chain ID: {self.chain_id}\n"
            f"Nonce: {self.nonce}\n"
            f"Issued At: {_format_time(self.issued_at)}\n"
            f"Expiration Time: {_format_time(self.expiration_time)}"
        )


_SIWE_HEADER = " wants you to sign in with your Ethereum account:"
_SIWE_FIELDS: Final = ("URI", "Version", "Chain ID", "Nonce", "Issued At", "Expiration Time")
_SIWE_PATTERNS: Final = {
    "URI": _URI,
    "Version": re.compile(re.escape(SIWE_VERSION)),
    "Chain ID": _CHAIN_ID,
    "Nonce": _NONCE,
    "Issued At": _RFC3339,
    "Expiration Time": _RFC3339,
}


def _split_lines(text: object) -> list[str]:
    if not isinstance(text, str) or not text:
        raise _message_error("message: missing")
    if len(text) > MAX_MESSAGE_CHARS:
        raise _message_error(f"message: longer than {MAX_MESSAGE_CHARS} characters")
    if "\r" in text:
        raise _message_error("message: line ends must be LF, not CRLF")
    return text.split("\n")


def _tagged_fields(
    lines: list[str], start: int, names: tuple[str, ...], patterns: dict[str, re.Pattern[str]]
) -> dict[str, str]:
    """Parse ``Name: value`` lines in a fixed order, naming the first bad line."""
    if len(lines) != start + len(names):
        raise _message_error(f"message: expected {start + len(names)} lines, got {len(lines)}")
    values: dict[str, str] = {}
    for offset, name in enumerate(names):
        line = lines[start + offset]
        number = start + offset + 1
        if not line.startswith(f"{name}: "):
            raise _message_error(f'line {number}: expected "{name}: ..."')
        value = line[len(name) + 2 :]
        if not patterns[name].fullmatch(value):
            raise _message_error(f"line {number} ({name}): malformed value")
        values[name] = value
    return values


def _time_value(values: dict[str, str], name: str, number: int) -> datetime:
    parsed = _parse_time(values[name])
    if parsed is None:
        raise _message_error(f"line {number} ({name}): not an RFC 3339 date-time")
    return parsed


def parse_siwe_message(text: str) -> SiweMessage:
    """Parse the exact EIP-4361 layout that ``SiweMessage.to_text`` produces.

    Raises ``InvalidRequestError`` (code ``invalid_message``) naming the bad line.
    """
    lines = _split_lines(text)
    header = lines[0]
    if not header.endswith(_SIWE_HEADER):
        raise _message_error("line 1: not an EIP-4361 sign-in header")
    domain = header[: -len(_SIWE_HEADER)]
    if not _DOMAIN.fullmatch(domain):
        raise _message_error("line 1: domain is not a host name with an optional port")
    if len(lines) < 4:
        raise _message_error(f"message: expected 10 or 11 lines, got {len(lines)}")
    address = lines[1]
    if not _HEX_ADDRESS.fullmatch(address) or not is_checksum_address(address):
        raise _message_error("line 2: not an EIP-55 checksummed Ethereum address")
    if lines[2] != "":
        raise _message_error("line 3: must be empty")
    statement, start = "", 4
    if lines[3] != "":
        if not _STATEMENT.fullmatch(lines[3]):
            raise _message_error("line 4 (statement): not 1..512 RFC 3986 characters")
        if len(lines) < 5 or lines[4] != "":
            raise _message_error("line 5: must be empty")
        statement, start = lines[3], 5
    values = _tagged_fields(lines, start, _SIWE_FIELDS, _SIWE_PATTERNS)
    return SiweMessage(
        domain=domain,
        address=address,
        statement=statement,
        uri=values["URI"],
        version=values["Version"],
        chain_id=int(values["Chain ID"]),
        nonce=values["Nonce"],
        issued_at=_time_value(values, "Issued At", start + 5),
        expiration_time=_time_value(values, "Expiration Time", start + 6),
    )


def _signature_bytes(signature_hex: object, length: int) -> bytes:
    if (
        not isinstance(signature_hex, str)
        or len(signature_hex) > 2 + 2 * length
        or not _SIGNATURE_HEX.fullmatch(signature_hex)
    ):
        raise WalletSignatureError(f"signature: not {length} bytes of 0x-hex")
    digits = signature_hex.removeprefix("0x")
    if len(digits) != 2 * length:
        raise WalletSignatureError(f"signature: not {length} bytes of 0x-hex")
    return bytes.fromhex(digits)


def recover_eth_signer(message_text: str, signature_hex: str) -> str:
    """The EIP-55 address that signed ``message_text`` with EIP-191 ``personal_sign``.

    ``signature_hex`` is r || s || v, 65 bytes, with v in {0, 1, 27, 28}.
    Raises ``WalletSignatureError`` for anything malformed; a valid signature by
    another key recovers another address, so compare the result.
    """
    if not isinstance(message_text, str) or not message_text:
        raise WalletSignatureError("message: missing")
    if len(message_text) > MAX_MESSAGE_CHARS:
        raise WalletSignatureError(f"message: longer than {MAX_MESSAGE_CHARS} characters")
    signature = _signature_bytes(signature_hex, 65)
    r, s, v = (
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:64], "big"),
        signature[64],
    )
    if v not in (0, 1, 27, 28):
        raise WalletSignatureError("signature: v is not 0, 1, 27 or 28")
    if not 0 < r < _SECP256K1_N or not 0 < s <= _SECP256K1_N // 2:
        # EIP-2: a high s is the malleable twin of a valid signature; wallets emit low s.
        raise WalletSignatureError("signature: r or s out of range (EIP-2 low s)")
    return str(to_checksum_address("0x" + _recover_address(message_text, signature, v).hex()))


def eth_signed_by(message_text: str, signature_hex: str, address: str) -> bool:
    """Whether ``address`` signed ``message_text`` (EIP-191): the sign-in hot path.

    The same checks as :func:`recover_eth_signer`, without building the EIP-55
    form of the signer (one Keccak hash and some object machinery fewer).
    """
    if not isinstance(message_text, str) or not message_text:
        raise WalletSignatureError("message: missing")
    if len(message_text) > MAX_MESSAGE_CHARS:
        raise WalletSignatureError(f"message: longer than {MAX_MESSAGE_CHARS} characters")
    signature = _signature_bytes(signature_hex, 65)
    r, s, v = (
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:64], "big"),
        signature[64],
    )
    if v not in (0, 1, 27, 28):
        raise WalletSignatureError("signature: v is not 0, 1, 27 or 28")
    if not 0 < r < _SECP256K1_N or not 0 < s <= _SECP256K1_N // 2:
        raise WalletSignatureError("signature: r or s out of range (EIP-2 low s)")
    expected = bytes.fromhex(address.removeprefix("0x"))
    return hmac.compare_digest(_recover_address(message_text, signature, v), expected)


def _recover_address(message_text: str, signature: bytes, v: int) -> bytes:
    """The 20-byte address whose key made ``signature`` over the EIP-191 message."""
    data = message_text.encode("utf-8", "surrogatepass")
    prefixed = b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data
    digest = keccak.new(digest_bits=256, data=prefixed).digest()
    recoverable = signature[:64] + bytes([v - 27 if v >= 27 else v])
    try:
        public = PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    except Exception:  # coincurve raises ValueError or its own errors for a bad signature
        raise WalletSignatureError("signature: no public key recovers from it") from None
    uncompressed = public.format(compressed=False)[1:]
    return keccak.new(digest_bits=256, data=uncompressed).digest()[-20:]


# --- Substrate / CENNZnet --------------------------------------------------------------


def _ss58_prefix_bytes(prefix: int) -> bytes:
    # https://docs.substrate.io/reference/address-formats/ (the SS58 spec): 0..63 in one
    # byte, 64..16383 in two bytes, the first with bit 6 set.
    if prefix < 64:
        return bytes([prefix])
    first = ((prefix & 0b1111_1100) >> 2) | 0b0100_0000
    second = (prefix >> 8) | ((prefix & 0b0000_0011) << 6)
    return bytes([first, second])


def _ss58_checksum(prefix_bytes: bytes, public_key: bytes) -> bytes:
    return hashlib.blake2b(_SS58_PREFIX + prefix_bytes + public_key, digest_size=64).digest()[:2]


def encode_ss58(public_key: bytes, prefix: int) -> str:
    """The SS58 address of a 32-byte public key on network ``prefix`` (0..16383, not 46/47).

    Raises ``ValueError`` for a wrong key length or prefix: callers pass
    values they already validated.
    """
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise ValueError("public key must be 32 bytes")
    if type(prefix) is not int or not 0 <= prefix <= 16383 or prefix in _SS58_RESERVED:
        raise ValueError("SS58 prefix must be 0..16383 and not reserved (46, 47)")
    prefix_bytes = _ss58_prefix_bytes(prefix)
    payload = prefix_bytes + public_key + _ss58_checksum(prefix_bytes, public_key)
    return base58.b58encode(payload).decode("ascii")


def decode_ss58(
    address: str, *, allowed_prefixes: Collection[int] | None = None
) -> tuple[int, bytes]:
    """``(network prefix, 32-byte public key)`` of an SS58 account address.

    Only 32-byte account ids (35 or 36 decoded bytes) and the canonical prefix
    encoding are accepted, so one key on one network has exactly one address.
    SS58 is case-sensitive: compare the key or the re-encoded address, never a
    lower-cased string. Raises ``InvalidAddressError``.
    """
    if not isinstance(address, str) or not address:
        raise InvalidAddressError("address: missing")
    if len(address) > _SS58_MAX_CHARS:
        raise InvalidAddressError("address: too long for an SS58 account address")
    try:
        raw = base58.b58decode(address.encode("ascii"))
    except ValueError:  # a non-ASCII or non-base58 character
        raise InvalidAddressError("address: not base58") from None
    if len(raw) not in (35, 36):
        raise InvalidAddressError("address: not an SS58 32-byte account id (bad length)")
    first = raw[0]
    if first >= 128:
        raise InvalidAddressError("address: reserved SS58 prefix byte")
    if first < 64:
        prefix, prefix_len = first, 1
    else:
        lower = ((first << 2) | (raw[1] >> 6)) & 0xFF
        prefix, prefix_len = lower | ((raw[1] & 0b0011_1111) << 8), 2
        if prefix < 64:
            raise InvalidAddressError("address: non-canonical two-byte SS58 prefix")
    if len(raw) != prefix_len + 34:
        raise InvalidAddressError("address: not an SS58 32-byte account id (bad length)")
    prefix_bytes, public_key = raw[:prefix_len], raw[prefix_len:-2]
    if not secrets.compare_digest(raw[-2:], _ss58_checksum(prefix_bytes, public_key)):
        raise InvalidAddressError("address: bad SS58 checksum")
    if prefix in _SS58_RESERVED:
        raise InvalidAddressError(f"address: SS58 prefix {prefix} is reserved")
    if allowed_prefixes is not None and prefix not in allowed_prefixes:
        raise InvalidAddressError(f"address: SS58 network prefix {prefix} is not accepted")
    return prefix, public_key


def _verifies(scheme: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        if scheme == "ed25519":
            VerifyKey(public_key).verify(message, signature)
            return True
        return bool(sr25519.verify(signature, message, public_key))
    except (CryptoError, ValueError, TypeError):  # bad signature, key or point encoding
        return False


def verify_substrate_signature(
    public_key: bytes, message: bytes, signature_hex: str, *, scheme: str
) -> None:
    """Check a 64-byte ed25519 or sr25519 signature by ``public_key`` over ``message``.

    polkadot.js ``signRaw`` signs ``<Bytes>`` + message + ``</Bytes>``, other
    signers the bare message; either is accepted. Raises ``WalletSignatureError``.
    """
    if scheme not in SUBSTRATE_SCHEMES:
        raise WalletSignatureError("scheme: must be 'ed25519' or 'sr25519'")
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise WalletSignatureError("public key: not 32 bytes")
    if not isinstance(message, bytes) or not message or len(message) > 4 * MAX_MESSAGE_CHARS:
        raise WalletSignatureError(f"message: missing or longer than {4 * MAX_MESSAGE_CHARS} bytes")
    signature = _signature_bytes(signature_hex, 64)
    wrapped = b"<Bytes>" + message + b"</Bytes>"
    if not (
        _verifies(scheme, public_key, message, signature)
        or _verifies(scheme, public_key, wrapped, signature)
    ):
        raise WalletSignatureError(f"signature: not a valid {scheme} signature by this account")


class SubstrateChallenge(TypedDict):
    domain: str
    address: str
    nonce: str
    issued_at: datetime
    expiration_time: datetime


_SUBSTRATE_TITLE: Final = "Parley Authentication"
_SUBSTRATE_HEADER = " wants you to sign in with your Substrate account:"
_SUBSTRATE_FIELDS: Final = ("Nonce", "Issued At", "Expiration Time")


def substrate_challenge_text(
    domain: str, address: str, nonce: str, issued_at: datetime, expiration_time: datetime
) -> str:
    """The text a Substrate wallet signs, in the spirit of seed 004's prompt::

        Parley Authentication
        {domain} wants you to sign in with your Substrate account:
        {address}

        Sign this message to prove you own the account. It is not a transaction ...

        Nonce: {nonce}
        Issued At: {RFC 3339}
        Expiration Time: {RFC 3339}

    Raises ``InvalidRequestError`` (``invalid_message``) or ``InvalidAddressError``.
    """
    _check_common(domain, nonce, issued_at, expiration_time)
    decode_ss58(address)
    return (
        f"{_SUBSTRATE_TITLE}\n{domain}{_SUBSTRATE_HEADER}\n{address}\n\n"
        f"{SUBSTRATE_STATEMENT}\n\n"
        f"Nonce: {nonce}\n"
        f"Issued At: {_format_time(issued_at)}\n"
        f"Expiration Time: {_format_time(expiration_time)}"
    )


def parse_substrate_challenge(text: str) -> SubstrateChallenge:
    """Parse the exact layout of ``substrate_challenge_text``.

    Raises ``InvalidRequestError`` (code ``invalid_message``) naming the bad line.
    """
    lines = _split_lines(text)
    if len(lines) != 9:
        raise _message_error(f"message: expected 9 lines, got {len(lines)}")
    if lines[0] != _SUBSTRATE_TITLE:
        raise _message_error(f'line 1: expected "{_SUBSTRATE_TITLE}"')
    if not lines[1].endswith(_SUBSTRATE_HEADER):
        raise _message_error("line 2: not a Parley Substrate sign-in header")
    domain = lines[1][: -len(_SUBSTRATE_HEADER)]
    if not _DOMAIN.fullmatch(domain):
        raise _message_error("line 2: domain is not a host name with an optional port")
    try:
        decode_ss58(lines[2])
    except InvalidAddressError as exc:
        raise _message_error(f"line 3: {exc.message}") from None
    if lines[3] != "" or lines[5] != "":
        raise _message_error(f"line {4 if lines[3] else 6}: must be empty")
    if lines[4] != SUBSTRATE_STATEMENT:
        raise _message_error("line 5: not the Parley sign-in statement")
    patterns = {"Nonce": _NONCE, "Issued At": _RFC3339, "Expiration Time": _RFC3339}
    values = _tagged_fields(lines, 6, _SUBSTRATE_FIELDS, patterns)
    issued_at = _time_value(values, "Issued At", 8)
    expiration_time = _time_value(values, "Expiration Time", 9)
    _check_common(domain, values["Nonce"], issued_at, expiration_time)
    return SubstrateChallenge(
        domain=domain,
        address=lines[2],
        nonce=values["Nonce"],
        issued_at=issued_at,
        expiration_time=expiration_time,
    )

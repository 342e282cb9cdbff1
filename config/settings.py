"""Parley's settings: one typed, frozen object, parsed once at start-up.

Every value comes from an environment variable named ``PARLEY_<SECTION>_<FIELD>``
(for example ``PARLEY_DATABASE_URL`` or ``PARLEY_AUTH_ACCESS_TOKEN_TTL``). With
no environment at all Parley runs embedded: SQLite under ``./var/``, in-memory
fan-out and key-value store, console SMS and e-mail providers. Nothing else in
Parley reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from config.errors import ConfigurationError

ENV_PREFIX = "PARLEY_"
# Variables under this prefix belong to the test suite, not to the server.
_TEST_ENV_PREFIX = "PARLEY_TEST_"

Seconds = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def gc_threshold_values(value: str) -> tuple[int, ...]:
    """``"50000,20,100"`` -> (50000, 20, 100); ``""`` -> () (Python's own)."""
    if not value.strip():
        return ()
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError('three whole numbers, as gc.set_threshold: "50000,20,100"')
    young, middle, old = (int(p) for p in parts)
    if not 100 <= young <= 10_000_000 or not 1 <= middle <= 1000 or not 1 <= old <= 1000:
        raise ValueError("young generation 100..10000000, the multipliers 1..1000")
    return young, middle, old


class ServerSettings(_Section):
    # Where people reach this deployment: e-mailed links and Sign-In with
    # Ethereum messages (domain, URI) are built from it.
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # Largest HTTP request body accepted by JSON endpoints (uploads have their own
    # limit); like a socket frame, it must hold an encrypted message's envelope.
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024
    # Proxies whose X-Forwarded-For is believed (comma-separated IPs, or "*").
    forwarded_allow_ips: str = "127.0.0.1"
    # Browser origins allowed to call the HTTP API, comma-separated ("" = none, "*" = any).
    cors_origins: str = ""

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or "://" not in value[:8] + "x":
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.rstrip("/")

    # Seconds a draining node waits for clients to move before it closes.
    drain_grace_seconds: Seconds = 10
    # Accept permessage-deflate on websockets. Off by default, as in socket.io 4:
    # envelopes are ciphertext and barely compress, deflate costs CPU per
    # recipient, and a compressed socket cannot share the fan-out's one frame.
    ws_compression: bool = False
    # Python's garbage collector (server/collector.py): the young-generation
    # threshold and the two multipliers, as gc.set_threshold ("" keeps
    # Python's 700,10,10), and whether to freeze what startup allocated.
    gc_threshold: str = "50000,20,100"
    gc_freeze: bool = True

    @field_validator("gc_threshold")
    @classmethod
    def _gc_threshold(cls, value: str) -> str:
        gc_threshold_values(value)
        return value.strip()

    @property
    def gc_thresholds(self) -> tuple[int, ...]:
        return gc_threshold_values(self.gc_threshold)

    # The built web client served at / (default: web/dist of this checkout).
    web_dir: Path | None = None


class DatabaseSettings(_Section):
    url: str = "sqlite://var/parley.sqlite3"
    # Apply pending migrations when the server starts. None: only on SQLite.
    auto_migrate: bool | None = None
    pool_min_size: Annotated[int, Field(ge=1, le=100)] = 1
    pool_max_size: Annotated[int, Field(ge=1, le=500)] = 10

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in {"sqlite", "postgres", "postgresql", "asyncpg"}:
            raise ValueError("must start with sqlite://, postgres:// or postgresql://")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite://")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


class RedisSettings(_Section):
    # Unset: in-memory fan-out and key-value store (one node only).
    url: str | None = None
    # Pub/sub channel the socket fan-out uses; nodes of one deployment share it.
    channel: str = "parley"
    # Prefix of every key Parley writes, so one Redis can serve several deployments.
    key_prefix: str = "parley:"

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address: where plain http is acceptable (tests, dev)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# OpenID Connect Discovery 1.0, section 3: https, no query or fragment.
ISSUER_MAX_CHARS = 160


class OidcProviderSettings(_Section):
    """One OpenID Connect provider people may sign in with (an app registered there)."""

    # The name in Parley's URLs (/v1/auth/oidc/<slug>/...).
    slug: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    # Exactly as the provider writes it in its discovery document and ID tokens.
    issuer: str
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    # Unset: a public client (PKCE only, no client authentication).
    client_secret: SecretStr | None = None
    scopes: str = "openid email profile"
    # The sign-in button's label (default: the slug).
    display_name: Annotated[str, StringConstraints(max_length=64)] = ""

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        if not 8 <= len(value) <= ISSUER_MAX_CHARS or not value.isascii():
            raise ValueError(f"an ASCII URL of at most {ISSUER_MAX_CHARS} characters")
        parts = urlsplit(value)
        if parts.query or parts.fragment or parts.username or parts.password or not parts.hostname:
            raise ValueError("a URL with a host and no query, fragment or credentials")
        if parts.scheme != "https" and not (
            parts.scheme == "http" and is_loopback_host(parts.hostname)
        ):
            raise ValueError("must be https:// (plain http only on a loopback host)")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: str) -> str:
        scopes = value.split()
        # RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        if not all(t.isascii() and t.isprintable() and not {'"', "\\"} & set(t) for t in scopes):
            raise ValueError("space-separated RFC 6749 scope tokens")
        if "openid" not in scopes or len(value) > 512:
            raise ValueError('must include "openid" (at most 512 characters)')
        return " ".join(scopes)

    @property
    def label(self) -> str:
        return self.display_name or self.slug


# Schemes a browser would run or read locally instead of navigating to an app.
_UNSAFE_RETURN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about"})
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
RETURN_URL_MAX_CHARS = 2048


@dataclass(frozen=True)
class ReturnUrlParts:
    """A return URL cut into what the allow-list compares."""

    scheme: str
    host: str  # lower case; "" for a native app's custom scheme without one
    port: int | None
    path: str  # no trailing slash; "" for the root
    query: str


def split_return_url(url: str) -> ReturnUrlParts:
    """Parse a return URL (or an allow-list entry) strictly; ``ValueError`` says why not.

    Refused: anything but printable ASCII, backslashes (browsers read them as
    slashes), credentials, fragments, dot segments (even percent-encoded), and
    schemes a browser runs or reads locally.
    """
    if not url or len(url) > RETURN_URL_MAX_CHARS or not url.isascii() or not url.isprintable():
        raise ValueError(f"printable ASCII, at most {RETURN_URL_MAX_CHARS} characters")
    if " " in url or "\\" in url or "#" in url:
        raise ValueError("no spaces, backslashes or fragment")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not _SCHEME.match(scheme) or scheme in _UNSAFE_RETURN_SCHEMES:
        raise ValueError("an absolute URL with an http(s) or app scheme")
    if "@" in parts.netloc:
        raise ValueError("no credentials in the URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number") from None
    host = (parts.hostname or "").lower()
    if scheme in ("http", "https"):
        if not host:
            raise ValueError("an http(s) URL needs a host")
        port = port or (443 if scheme == "https" else 80)
    decoded = unquote(parts.path)
    if any(segment in (".", "..") for segment in decoded.split("/")) or "\\" in decoded:
        raise ValueError("no dot segments in the path")
    return ReturnUrlParts(scheme, host, port, parts.path.rstrip("/"), parts.query)


_OIDC_PROVIDERS = TypeAdapter(tuple[OidcProviderSettings, ...])


def _oidc_problem(err: Any) -> str:
    """``[1].issuer: must be https...`` for one error of the provider list."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"


class AuthSettings(_Section):
    # Directory of generated keys (JWT signing key, server secret), mode 0700/0600.
    keys_dir: Path = Path("var/keys")
    # PEM of the Ed25519 JWT signing key; when unset it is generated in keys_dir.
    jwt_private_key: SecretStr | None = None
    # Secret for keyed hashes (OTPs); when unset it is generated in keys_dir.
    server_secret: SecretStr | None = None
    # Pepper mixed into every password hash (seed 001); never in the database.
    password_pepper: SecretStr | None = None
    # PEM of the CA's Ed25519 key that certifies device keys (seed 000).
    ca_private_key: SecretStr | None = None
    # Raw public keys (base64url, comma-separated) of retired JWT signing keys
    # that still verify, for rotation when keys come from the environment.
    jwt_retired_public_keys: str = ""
    # Seconds between re-reads of keys_dir (picks up `parley keys rotate`).
    key_reload_interval: Annotated[float, Field(gt=0, le=3600)] = 30
    issuer: str = "parley"
    audience: str = "parley"
    access_token_ttl: Annotated[int, Field(ge=30, le=3600)] = 15 * 60
    refresh_token_ttl: Annotated[int, Field(ge=3600, le=90 * 86400)] = 30 * 86400
    # Seed 002 and ASVS: an OTP lives ten minutes at most.
    otp_ttl: Annotated[int, Field(ge=30, le=600)] = 600
    otp_max_attempts: Annotated[int, Field(ge=1, le=10)] = 5
    otp_resend_cooldown: Annotated[int, Field(ge=0, le=600)] = 30
    otp_per_number_per_hour: Annotated[int, Field(ge=1, le=1000)] = 5
    otp_per_ip_per_hour: Annotated[int, Field(ge=1, le=100_000)] = 50
    # Region assumed for phone numbers written without a country code.
    default_region: str = "US"
    # argon2id cost (RFC 9106 low-memory profile by default) and how many
    # hashes may run at once (each takes password_memory_kib of memory).
    password_time_cost: Annotated[int, Field(ge=1, le=20)] = 3
    password_memory_kib: Annotated[int, Field(ge=8 * 1024, le=1024 * 1024)] = 64 * 1024
    password_parallelism: Annotated[int, Field(ge=1, le=16)] = 4
    password_hash_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    # Failed password sign-ins per account identifier and per address per 15 minutes.
    login_failures_per_account: Annotated[int, Field(ge=1, le=1000)] = 10
    login_failures_per_ip: Annotated[int, Field(ge=1, le=100_000)] = 100
    email_verify_ttl: Annotated[int, Field(ge=300, le=7 * 86400)] = 86400
    # Requests for a fresh verification link per e-mail address and per client
    # address per hour, counted whether or not an account waits on the address.
    verify_resend_per_email_per_hour: Annotated[int, Field(ge=1, le=1000)] = 5
    verify_resend_per_ip_per_hour: Annotated[int, Field(ge=1, le=100_000)] = 50
    # Password reset requests, per e-mail address and per client address.
    password_reset_per_email_per_hour: Annotated[int, Field(ge=1, le=1000)] = 5
    password_reset_per_ip_per_hour: Annotated[int, Field(ge=1, le=100_000)] = 50
    password_reset_ttl: Annotated[int, Field(ge=300, le=86400)] = 3600
    # Accounts that never verified any identity are deleted after this long.
    unverified_account_ttl: Annotated[int, Field(ge=3600, le=90 * 86400)] = 7 * 86400
    wallet_challenge_ttl: Annotated[int, Field(ge=30, le=3600)] = 300
    # EIP-155 chain ids accepted in Sign-In with Ethereum messages (and PARLEY_ETH_CHAIN_ID).
    ethereum_chain_ids: str = "1"
    # SS58 network prefixes accepted for Substrate/CENNZnet addresses ("" = any).
    substrate_ss58_prefixes: str = ""
    # Seconds between clean-up runs (expired challenges, links, sessions, accounts).
    cleanup_interval: Annotated[float, Field(gt=0, le=86400)] = 600
    # OpenID Connect providers, as a JSON list of {slug, issuer, client_id,
    # client_secret?, scopes?, display_name?} ("" or [] = none).
    oidc_providers: Annotated[tuple[OidcProviderSettings, ...], NoDecode] = ()
    # Where a sign-in may return to (comma-separated URL prefixes: an origin,
    # or an origin and path; custom schemes for native apps). "" = the
    # server's own PARLEY_SERVER_PUBLIC_URL origin.
    oidc_return_urls: str = ""
    # Seconds one call to a provider may take in all (connect, wait, read).
    oidc_timeout: Annotated[float, Field(gt=0, le=60)] = 10
    # Seconds a provider's discovery document and keys are kept.
    oidc_metadata_ttl: Annotated[int, Field(ge=60, le=7 * 86400)] = 3600
    # Sign-ins (and links) one client address may start per hour.
    oidc_starts_per_ip_per_hour: Annotated[int, Field(ge=1, le=100_000)] = 300

    @field_validator("oidc_return_urls")
    @classmethod
    def _oidc_return_urls(cls, value: str) -> str:
        for entry in split_list(value):
            try:
                parts = split_return_url(entry)
            except ValueError as exc:
                raise ValueError(f"{entry[:80]!r}: {exc}") from None
            if parts.query:
                raise ValueError(f"{entry[:80]!r}: a prefix has no query")
            if parts.scheme == "http" and not is_loopback_host(parts.host):
                raise ValueError(f"{entry[:80]!r}: must be https:// (http only on loopback)")
        return value

    @field_validator("oidc_providers", mode="before")
    @classmethod
    def _oidc_providers(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return ()
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"not JSON ({exc})") from None
        try:
            providers = _OIDC_PROVIDERS.validate_python(value)
        except ValidationError as exc:
            # One message naming the entry and field, under this one variable.
            raise ValueError("; ".join(_oidc_problem(err) for err in exc.errors()[:5])) from None
        slugs = [p.slug for p in providers]
        if len(slugs) != len(set(slugs)):
            raise ValueError("two providers have the same slug")
        return providers


class SmsSettings(_Section):
    provider: Literal["console", "http"] = "console"
    # Twilio-compatible Messages endpoint, e.g. https://api.twilio.com/2010-04-01/Accounts/AC.../Messages.json
    http_url: str | None = None
    http_username: str | None = None
    http_password: SecretStr | None = None
    sender: str = "Parley"


class EmailSettings(_Section):
    provider: Literal["console", "smtp"] = "console"
    smtp_host: str = "127.0.0.1"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    sender: str = "Parley <no-reply@localhost>"


class MediaSettings(_Section):
    # Blob store: "local" keeps blobs under dir, "s3" in an S3-compatible bucket.
    store: Literal["local", "s3"] = "local"
    # Local blobs live in dir/blobs; uploads are spooled to dir/tmp either way.
    dir: Path = Path("var/media")
    s3_endpoint_url: str | None = None
    s3_bucket: str = "parley-media"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = ""
    # Largest image upload and largest encrypted blob, in bytes.
    max_upload_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 25 * 1024 * 1024
    max_blob_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 25 * 1024 * 1024
    # Images with more pixels (all frames together) are refused before decoding.
    max_pixels: Annotated[int, Field(ge=1, le=1_000_000_000)] = 100_000_000
    # Image processing threads, and jobs that may wait for one before uploads
    # are turned away with 503.
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    queue: Annotated[int, Field(ge=0, le=10_000)] = 32
    # Bytes a user may keep stored (all variants and blobs), and uploads per minute.
    quota_bytes: Annotated[int, Field(ge=0)] = 1024**3
    uploads_per_minute: Annotated[float, Field(gt=0, le=100_000)] = 60
    uploads_burst: Annotated[int, Field(ge=1, le=100_000)] = 20


class RealtimeSettings(_Section):
    ping_interval: Seconds = 25
    ping_timeout: Seconds = 20
    # Largest socket frame (or long-polling body) a client may send.
    max_frame_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024
    # Origins allowed to open a socket, comma-separated; "" = same origin only, "*" = any.
    cors_allowed_origins: str = "*"
    # Presence: each node refreshes its users every this many seconds; a dead
    # node's users go offline within three of them.
    presence_heartbeat: Annotated[float, Field(gt=0, le=300)] = 10
    # Events a user may send per second (all their sockets, every node) and the burst.
    events_per_second: Annotated[float, Field(gt=0, le=10_000)] = 20
    events_burst: Annotated[int, Field(ge=1, le=100_000)] = 60
    # Packets queued for one socket before it is dropped as a slow consumer.
    max_pending_packets: Annotated[int, Field(ge=10, le=1_000_000)] = 2000
    # Seconds between rechecks of the sessions behind this node's sockets; a
    # revoked session's sockets are dropped at once, this bounds a lost notice.
    session_check_interval: Annotated[float, Field(gt=0, le=3600)] = 60


class ChatSettings(_Section):
    max_text_chars: Annotated[int, Field(ge=1, le=100_000)] = 4000
    history_page_max: Annotated[int, Field(ge=1, le=1000)] = 100
    max_group_members: Annotated[int, Field(ge=2, le=100_000)] = 1000
    # An envelope wraps its key once per member device (at most 1,000 devices,
    # up to 20 per user), so encrypted groups are smaller.
    max_encrypted_group_members: Annotated[int, Field(ge=2, le=1000)] = 50
    # Seconds a "typing" indicator lasts unless renewed.
    typing_ttl: Annotated[int, Field(ge=1, le=60)] = 5


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class EthSettings(_Section):
    """Tips (seed 003): an Ethereum JSON-RPC node to prepare, broadcast and track transfers."""

    # Any node's HTTP JSON-RPC endpoint; unset, the tip endpoints answer 503 tips_not_configured.
    rpc_url: str | None = None
    # The chain tips are made on; the node must report the same (eth_chainId).
    # Unset, the node's own chain id is used.
    chain_id: Annotated[int, Field(gt=0)] | None = None
    # Blocks on top of the one holding a tip (that block counts as 1) before it is confirmed.
    confirmations: Annotated[int, Field(ge=1, le=1000)] = 2
    # Per JSON-RPC call; idempotent calls are tried ``rpc_retries`` more times.
    rpc_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    rpc_retries: Annotated[int, Field(ge=0, le=10)] = 2
    # How often pending tips are checked against the chain.
    poll_seconds: Annotated[float, Field(gt=0, le=600)] = 4.0
    # The largest tip, in ETH (a decimal string).
    max_tip_eth: str = "10"
    # A prepared tip not submitted within this many seconds expires.
    prepare_ttl: Seconds = 900
    # A submitted transaction the node has not seen (or mined) for this long is dropped.
    drop_after: Seconds = 3600
    # Prepared tips a user may hold at once, and tips prepared per user per hour.
    max_open_per_user: Annotated[int, Field(ge=1, le=1000)] = 10
    prepares_per_hour: Annotated[int, Field(ge=1, le=100000)] = 60

    @field_validator("rpc_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// JSON-RPC URL")
        return value or None

    @field_validator("max_tip_eth")
    @classmethod
    def _eth_amount(cls, value: str) -> str:
        from decimal import Decimal, InvalidOperation

        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValueError("must be a decimal number of ETH") from None
        if not amount.is_finite() or amount <= 0 or amount.as_tuple().exponent < -18:  # type: ignore[operator]
            raise ValueError("must be a positive amount of ETH with at most 18 decimals")
        return value


class OpensearchSettings(_Section):
    url: str | None = None


class SearchSettings(_Section):
    # Events (the outbox) the indexer has applied are deleted once this many
    # seconds old; a pruned event still reads as indexed.
    event_retention: Annotated[int, Field(ge=3600, le=365 * 86400)] = 7 * 86400
    # Seconds between prune rounds, run by the node that runs the indexer.
    event_prune_interval: Annotated[float, Field(gt=0, le=86400)] = 600


def split_list(value: str) -> list[str]:
    """A comma-separated setting as a list, blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


class Settings(BaseSettings):
    """Everything Parley can be told, one section per component."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    auth: AuthSettings = AuthSettings()
    sms: SmsSettings = SmsSettings()
    email: EmailSettings = EmailSettings()
    media: MediaSettings = MediaSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    chat: ChatSettings = ChatSettings()
    log: LogSettings = LogSettings()
    eth: EthSettings = EthSettings()
    opensearch: OpensearchSettings = OpensearchSettings()
    search: SearchSettings = SearchSettings()


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable behind a pydantic error location."""
    return ENV_PREFIX + "_".join(str(part) for part in loc).upper()


def load_settings() -> Settings:
    """Parse the environment once; a bad value raises ``ConfigurationError`` naming it."""
    sections = {name.upper() for name in Settings.model_fields}
    unknown = sorted(
        key
        for key in os.environ
        if key.upper().startswith(ENV_PREFIX)
        and not key.upper().startswith(_TEST_ENV_PREFIX)
        and key.upper()[len(ENV_PREFIX) :].split("_", 1)[0] not in sections
    )
    if unknown:
        raise ConfigurationError(f"{unknown[0]}: unknown setting (see README, Configuration)")
    try:
        return Settings()
    except SettingsError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from None
    except ValidationError as exc:
        problems = [f"{env_name(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None

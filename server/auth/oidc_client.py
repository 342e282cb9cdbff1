"""Talking to OpenID Connect providers: discovery, keys and the token endpoint.

Every call has a total deadline (``PARLEY_AUTH_OIDC_TIMEOUT``: connect, wait
and read together, so a provider dripping bytes cannot hold a request), a
size limit, no redirects, and its failures translated here: unreachable,
slow or 5xx is ``503 oidc_provider_unavailable``, an answer Parley cannot
use is ``502 oidc_provider_error``. The discovery document (OpenID Connect
Discovery 1.0) and the key set are cached for ``PARLEY_AUTH_OIDC_METADATA_TTL``
seconds, fetched by one request at a time, and served stale while the
provider is down.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote_plus, urlsplit

import anyio
import httpx
import orjson

from config.errors import ParleyError, UnavailableError
from config.settings import OidcProviderSettings, is_loopback_host

log = logging.getLogger(__name__)

# Discovery documents and key sets are a few KiB; a provider sending more is broken.
MAX_RESPONSE_BYTES = 256 * 1024
# After a failed fetch, callers get the same failure (or the stale copy) for this long.
FAILURE_BACKOFF = 5.0
_ENDPOINT_CHARS = 2048
_OAUTH_ERROR = re.compile(r"[a-z_]{1,64}")
# Client authentication at the token endpoint (OpenID Connect Core 1.0, section 9).
SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method's name
SECRET_POST = "client_secret_post"  # noqa: S105 - a method's name

T = TypeVar("T")


class OidcProviderUnavailableError(UnavailableError):
    code = "oidc_provider_unavailable"


class OidcProviderError(ParleyError):
    status = 502
    code = "oidc_provider_error"


@dataclass(frozen=True)
class ProviderMetadata:
    """What Parley uses of a discovery document."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    # client_secret_basic | client_secret_post | none (a public client)
    token_auth_method: str


class ProviderHttp:
    """Bounded HTTP calls to providers: one deadline, one size limit, no redirects."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        self._ssl_lock = asyncio.Lock()

    async def _ssl_context(self) -> ssl.SSLContext:
        # Loading the CA bundle reads files and parses certificates: off the loop, once.
        async with self._ssl_lock:
            if self._ssl is None:
                self._ssl = await anyio.to_thread.run_sync(httpx.create_ssl_context)
            return self._ssl

    async def request(
        self,
        method: str,
        url: str,
        *,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """The status and the JSON body of one call (``None`` for a body that is not JSON)."""
        context = await self._ssl_context()
        host = urlsplit(url).hostname or "the provider"
        try:
            async with (
                asyncio.timeout(self._timeout),
                httpx.AsyncClient(
                    verify=context, timeout=self._timeout, follow_redirects=False
                ) as client,
                client.stream(
                    method,
                    url,
                    data=form,
                    headers={
                        "accept": "application/json",
                        "accept-encoding": "identity",
                        **(headers or {}),
                    },
                ) as response,
            ):
                status = response.status_code
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise OidcProviderError(f"{host} sent an answer over the size limit")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise OidcProviderError(f"{host} sent an answer over the size limit")
        except TimeoutError:
            raise OidcProviderUnavailableError(
                f"{host} did not answer within {self._timeout:g} s"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            raise OidcProviderUnavailableError(
                f"cannot reach {host} ({type(exc).__name__})"
            ) from None
        if status >= 500 or status == 429:
            raise OidcProviderUnavailableError(f"{host} answered HTTP {status}")
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return status, None


class _CachedDocument(Generic[T]):
    """One fetched document: kept ``ttl`` seconds, loaded by one caller at a time."""

    def __init__(self, load: Callable[[], Awaitable[T]], ttl: float, what: str) -> None:
        self._load = load
        self._ttl = ttl
        self._what = what
        self._value: T | None = None
        self._fetched_at = float("-inf")
        self._retry_at = float("-inf")
        self._failure: tuple[type[ParleyError], str] | None = None
        self._lock = asyncio.Lock()

    def _fresh(self, fetched_after: float | None) -> T | None:
        if fetched_after is not None:
            return self._value if self._fetched_at > fetched_after else None
        if time.monotonic() - self._fetched_at < self._ttl:
            return self._value
        return None

    async def get(self, *, fetched_after: float | None = None) -> T:
        """The document; with ``fetched_after`` (a ``time.monotonic()``), one fetched since."""
        value = self._fresh(fetched_after)
        if value is not None:
            return value
        async with self._lock:
            value = self._fresh(fetched_after)
            if value is not None:
                return value
            stale = self._value if fetched_after is None else None
            if time.monotonic() < self._retry_at and self._failure is not None:
                if stale is not None:
                    return stale
                kind, message = self._failure
                raise kind(message)
            try:
                value = await self._load()
            except ParleyError as exc:
                self._failure = (type(exc), exc.message)
                self._retry_at = time.monotonic() + FAILURE_BACKOFF
                if stale is not None:
                    log.warning("oidc: using a stale %s", self._what, extra={"reason": exc.message})
                    return stale
                raise
            self._value, self._fetched_at, self._failure = value, time.monotonic(), None
            return value


def _endpoint(document: Mapping[str, Any], name: str, *, loopback_http: bool) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value.isascii() or len(value) > _ENDPOINT_CHARS:
        raise OidcProviderError(f"the discovery document has no usable `{name}`")
    parts = urlsplit(value)
    secure = parts.scheme == "https" or (
        loopback_http and parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    )
    if not secure or not parts.hostname or parts.fragment or "@" in parts.netloc:
        raise OidcProviderError(f"the discovery document's `{name}` is not an https URL")
    return value


class OidcProvider:
    """One configured provider: its settings, cached discovery document and keys."""

    def __init__(self, settings: OidcProviderSettings, http: ProviderHttp, ttl: float) -> None:
        self.settings = settings
        self._http = http
        self._metadata = _CachedDocument(self._load_metadata, ttl, "discovery document")
        self._jwks = _CachedDocument(self._load_jwks, ttl, "key set")

    @property
    def slug(self) -> str:
        return self.settings.slug

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    async def metadata(self) -> ProviderMetadata:
        return await self._metadata.get()

    async def jwks(self, *, fetched_after: float | None = None) -> dict[str, Any]:
        """The key set; with ``fetched_after``, fetched again unless someone just did."""
        return await self._jwks.get(fetched_after=fetched_after)

    async def redeem_code(self, code: str, redirect_uri: str, verifier: str) -> str:
        """Exchange an authorization code (RFC 6749 section 4.1.3, RFC 7636); the ID token."""
        metadata = await self.metadata()
        s = self.settings
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers: dict[str, str] = {}
        secret = s.client_secret.get_secret_value() if s.client_secret is not None else ""
        if metadata.token_auth_method == SECRET_BASIC:
            # RFC 6749 section 2.3.1: each part form-encoded, then Basic.
            pair = f"{quote_plus(s.client_id)}:{quote_plus(secret)}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif metadata.token_auth_method == SECRET_POST:
            form |= {"client_id": s.client_id, "client_secret": secret}
        else:
            form["client_id"] = s.client_id
        status, answer = await self._http.request(
            "POST", metadata.token_endpoint, form=form, headers=headers
        )
        if not isinstance(answer, dict):
            raise OidcProviderError("the token endpoint did not answer with JSON")
        if status != 200:
            error = answer.get("error")
            reason = error if isinstance(error, str) and _OAUTH_ERROR.fullmatch(error) else status
            raise OidcProviderError(f"the provider refused the authorization code ({reason})")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise OidcProviderError("the token endpoint sent no ID token")
        return id_token

    async def _load_metadata(self) -> ProviderMetadata:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, document = await self._http.request("GET", url)
        if status != 200 or not isinstance(document, dict):
            raise OidcProviderError(f"the discovery document is missing (HTTP {status})")
        # Discovery 1.0, section 4.3: the document must name exactly this issuer.
        if document.get("issuer") != self.issuer:
            raise OidcProviderError("the discovery document names another issuer")
        loopback_http = self.issuer.startswith("http://")
        response_types = document.get("response_types_supported", ["code"])
        if not isinstance(response_types, list) or "code" not in response_types:
            raise OidcProviderError("the provider does not offer the authorization code flow")
        return ProviderMetadata(
            authorization_endpoint=_endpoint(
                document, "authorization_endpoint", loopback_http=loopback_http
            ),
            token_endpoint=_endpoint(document, "token_endpoint", loopback_http=loopback_http),
            jwks_uri=_endpoint(document, "jwks_uri", loopback_http=loopback_http),
            token_auth_method=self._token_auth_method(document),
        )

    def _token_auth_method(self, document: Mapping[str, Any]) -> str:
        if self.settings.client_secret is None:
            return "none"
        # Discovery 1.0, section 3: absent means client_secret_basic.
        methods = document.get("token_endpoint_auth_methods_supported", [SECRET_BASIC])
        if not isinstance(methods, list):
            methods = []
        for method in (SECRET_BASIC, SECRET_POST):
            if method in methods:
                return method
        raise OidcProviderError(
            "the provider takes neither client_secret_basic nor client_secret_post"
        )

    async def _load_jwks(self) -> dict[str, Any]:
        metadata = await self.metadata()
        status, document = await self._http.request("GET", metadata.jwks_uri)
        if status != 200 or not isinstance(document, dict):
            raise OidcProviderError(f"the provider's key set is missing (HTTP {status})")
        if not isinstance(document.get("keys"), list):
            raise OidcProviderError("the provider's key set has no keys")
        return document

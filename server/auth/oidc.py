"""Sign-in and linking with OpenID Connect providers (seed 000's "social" way in).

Authorization code flow with PKCE (RFC 7636, ``S256``), ``state`` and
``nonce`` (OpenID Connect Core 1.0, section 3.1):

1. ``start`` checks the app's return URL against the allow-list, stores the
   request under the SHA-256 of a fresh ``state`` (10 minutes, single use)
   and sends the browser to the provider. Sign-ins are bound to the browser
   by a cookie, so a callback URL someone else started cannot sign a victim
   into the attacker's account (RFC 9700 section 4.7, login CSRF).
2. ``callback`` spends the state, redeems the code with the verifier, checks
   the ID token, and sends the browser back to the app with a one-time code
   (60 s, stored as its SHA-256) in the URL fragment: ``#parley_code=...``,
   or ``#parley_error=<code>``.
3. The app spends that code: ``exchange`` for a token pair, or (linking)
   ``finish_link`` with the access token of the account that started it.

The identity is ``issuer|sub``, never the e-mail address: an address a
provider vouches for is not proof of owning a Parley account that has it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import orjson

from config.errors import AuthenticationError, NotFoundError, ParleyError, RateLimitedError
from config.settings import AuthSettings, split_list
from crypto.oidc import (
    IdTokenClaims,
    UnknownSigningKeyError,
    identity_value,
    pkce_challenge,
    pkce_verifier,
    request_nonce,
    verify_id_token,
)
from crypto.tokens import constant_time_equal
from server.auth.identities import IdentityService
from server.auth.oidc_client import OidcProvider, OidcProviderError, ProviderHttp
from server.auth.oidc_schemas import OidcProviderOut
from server.auth.phone import ClientInfo
from server.auth.return_urls import ReturnUrlPolicy
from server.auth.schemas import IdentityOut, TokenPair
from server.auth.sessions import SessionService
from server.users.service import UserService
from storage.kv import KeyValueStore
from storage.models import IDENTITY_VALUE_LENGTH

log = logging.getLogger(__name__)

KIND = "oidc"
SIGN_IN = "sign_in"
LINK = "link"
# Seconds a person has to finish at the provider (OpenID Connect: keep it short).
STATE_TTL = 600
# Seconds the app has to spend the code it was sent back with.
CODE_TTL = 60
BROWSER_COOKIE = "parley_oidc_browser"
HOUR = 3600
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_OAUTH_ERROR = re.compile(r"[a-z_]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_NICKNAME_CHARS = 64
_DISPLAY_CHARS = 255


class OidcProviderNotFoundError(NotFoundError):
    code = "oidc_provider_not_found"


class OidcStateError(ParleyError):
    status = 400
    code = "oidc_state_invalid"


class OidcCodeError(AuthenticationError):
    code = "oidc_code_invalid"


class OidcAccessDeniedError(AuthenticationError):
    code = "oidc_access_denied"


@dataclass(frozen=True)
class Started:
    authorization_url: str
    # The browser cookie to (re)set: sign-ins only.
    browser_id: str | None


def new_token() -> str:
    """256 random bits, 43 URL-safe characters: states, codes, browser ids."""
    return secrets.token_urlsafe(32)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _clean(text: str, limit: int) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def _with_fragment(url: str, name: str, value: str) -> str:
    return f"{url}#{urlencode({name: value})}"


class OidcService:
    """OpenID Connect sign-in and linking for the configured providers."""

    def __init__(
        self,
        settings: AuthSettings,
        public_url: str,
        kv: KeyValueStore,
        secret: bytes,
        users: UserService,
        sessions: SessionService,
        identities: IdentityService,
        http: ProviderHttp | None = None,
    ) -> None:
        self._settings = settings
        self._public_url = public_url
        self._kv = kv
        self._secret = secret
        self._users = users
        self._sessions = sessions
        self._identities = identities
        http = http or ProviderHttp(settings.oidc_timeout)
        self._providers = {
            p.slug: OidcProvider(p, http, settings.oidc_metadata_ttl)
            for p in settings.oidc_providers
        }
        origin = urlsplit(public_url)
        self._return_urls = ReturnUrlPolicy(
            split_list(settings.oidc_return_urls) or [f"{origin.scheme}://{origin.netloc}"]
        )

    @property
    def secure_cookies(self) -> bool:
        """Browser cookies only over https when people reach the server over https."""
        return self._public_url.startswith("https://")

    def providers(self) -> list[OidcProviderOut]:
        return [
            OidcProviderOut(slug=p.slug, display_name=p.settings.label)
            for p in self._providers.values()
        ]

    def provider(self, slug: str) -> OidcProvider:
        provider = self._providers.get(slug)
        if provider is None:
            raise OidcProviderNotFoundError("no such sign-in provider here")
        return provider

    def redirect_uri(self, provider: OidcProvider) -> str:
        return f"{self._public_url}/v1/auth/oidc/{provider.slug}/callback"

    async def start_sign_in(
        self,
        slug: str,
        return_to: str,
        client: ClientInfo,
        *,
        app_challenge: str,
        browser_id: str | None,
    ) -> Started:
        """Where to send the browser to sign in: the provider's authorization URL.

        An unknown provider or a return URL off the allow-list raises (nothing may
        go to such a URL). Once ``return_to`` is known good, a later failure (rate
        limit, provider down or unusable) sends the browser back to it with
        ``#parley_error=<code>``, for the app to show.
        """
        provider = self._check_start(slug, return_to)
        try:
            return await self._begin(
                provider, return_to, client, app_challenge=app_challenge, browser_id=browser_id
            )
        except ParleyError as exc:
            return Started(_with_fragment(return_to, "parley_error", exc.code), None)

    async def start_link(
        self, slug: str, return_to: str, client: ClientInfo, *, app_challenge: str, user_id: str
    ) -> Started:
        """The provider's authorization URL for linking an identity there to ``user_id``."""
        provider = self._check_start(slug, return_to)
        return await self._begin(
            provider, return_to, client, app_challenge=app_challenge, link_user_id=user_id
        )

    def _check_start(self, slug: str, return_to: str) -> OidcProvider:
        provider = self.provider(slug)
        self._return_urls.check(return_to)
        return provider

    async def _begin(
        self,
        provider: OidcProvider,
        return_to: str,
        client: ClientInfo,
        *,
        app_challenge: str,
        browser_id: str | None = None,
        link_user_id: str | None = None,
    ) -> Started:
        """A new flow's state, and the provider's authorization URL for it.

        ``app_challenge`` is the app's own S256 challenge: the code this flow ends
        with is spent only with its verifier, so a code that reaches another app
        (a planted link, a custom scheme two apps claim) is worth nothing there.
        """
        await self._limit(client)
        metadata = await provider.metadata()
        state = new_token()
        record = {
            "p": provider.slug,
            "purpose": SIGN_IN,
            "user": "",
            "return_to": return_to,
            "app": app_challenge,
        }
        if link_user_id is None:
            if browser_id is None or not _TOKEN.fullmatch(browser_id):
                browser_id = new_token()
            record["browser"] = _digest(browser_id)
        else:
            browser_id = None
            record |= {"purpose": LINK, "user": link_user_id}
        await self._kv.set(f"oidc:state:{_digest(state)}", orjson.dumps(record), ttl=STATE_TTL)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": provider.settings.client_id,
                "redirect_uri": self.redirect_uri(provider),
                "scope": provider.settings.scopes,
                "state": state,
                "nonce": request_nonce(self._secret, state),
                "code_challenge": pkce_challenge(pkce_verifier(self._secret, state)),
                "code_challenge_method": "S256",
            }
        )
        endpoint = metadata.authorization_endpoint
        separator = "&" if urlsplit(endpoint).query else "?"
        return Started(f"{endpoint}{separator}{query}", browser_id)

    async def callback(
        self,
        slug: str,
        *,
        state: str,
        code: str | None,
        error: str | None,
        issuer: str | None,
        browser_id: str | None,
    ) -> str:
        """Where to send the browser: the return URL with a code or an error in its fragment.

        Raises ``OidcStateError`` when the state is unknown, expired or spent:
        then there is no return URL to go back to.
        """
        provider = self.provider(slug)
        record = await self._spend("oidc:state", state)
        if record is None:
            raise OidcStateError(
                "this sign-in is unknown, expired or finished already; start again"
            )
        return_to = record["return_to"]
        try:
            code_record = await self._finish_at_provider(
                provider, record, state, code, error, issuer, browser_id
            )
        except ParleyError as exc:
            log.info("oidc callback refused", extra={"provider": slug, "code": exc.code})
            return _with_fragment(return_to, "parley_error", exc.code)
        one_time = new_token()
        await self._kv.set(
            f"oidc:code:{_digest(one_time)}", orjson.dumps(code_record), ttl=CODE_TTL
        )
        return _with_fragment(return_to, "parley_code", one_time)

    async def exchange(
        self,
        code: str,
        *,
        app_verifier: str,
        device_name: str,
        client: ClientInfo,
        browser_id: str | None = None,
    ) -> TokenPair:
        """Spend a sign-in code: a session for the identity's account, created on first use.

        Only with the ``app_verifier`` of the start's challenge, so a code that
        reaches another app (a planted link: login CSRF) is refused there; a
        browser that carries the sign-in cookie (``browser_id``) may, besides,
        spend only codes of sign-ins it started.
        """
        record = await self._spend_code(code, app_verifier)
        if record["purpose"] != SIGN_IN:
            raise OidcCodeError("this code links an identity; it cannot sign in")
        if (
            browser_id is not None
            and record.get("browser")
            and not (
                _TOKEN.fullmatch(browser_id)
                and constant_time_equal(_digest(browser_id), record["browser"])
            )
        ):
            raise OidcCodeError("this code is for a sign-in started in another browser")
        value = record["value"]
        pair = await self._sessions.start_session_for_identity(
            KIND, value, device_name=device_name, user_agent=client.user_agent, ip=client.ip
        )
        if pair is not None:
            return pair
        user, created = await self._users.sign_in_with_identity(
            KIND, value, nickname=record["nickname"] or None, display=record["display"]
        )
        log.info("oidc sign-in", extra={"user_id": user.id, "provider": record["p"]})
        return await self._sessions.start_session(
            user.id,
            device_name=device_name,
            user_agent=client.user_agent,
            ip=client.ip,
            new_user=created,
        )

    async def finish_link(self, user_id: str, code: str, app_verifier: str) -> IdentityOut:
        """Spend a link code for the account that started the link: the linked identity."""
        record = await self._spend_code(code, app_verifier)
        # Only the account that started the link may finish it, so a link URL
        # sent to someone else cannot attach their identity to the sender.
        if record["purpose"] != LINK or record["user"] != user_id:
            raise OidcCodeError("this code does not link an identity to your account")
        return await self._identities.attach(user_id, KIND, record["value"], record["display"])

    async def _finish_at_provider(
        self,
        provider: OidcProvider,
        record: dict[str, str],
        state: str,
        code: str | None,
        error: str | None,
        issuer: str | None,
        browser_id: str | None,
    ) -> dict[str, str]:
        if record["p"] != provider.slug:
            raise OidcStateError("this sign-in was started with another provider")
        if record["purpose"] == SIGN_IN and not (
            browser_id is not None
            and _TOKEN.fullmatch(browser_id)
            and constant_time_equal(_digest(browser_id), record.get("browser", ""))
        ):
            raise OidcStateError("this sign-in was started in another browser")
        # RFC 9207: a provider that names itself must be the one asked (mix-up attacks).
        if issuer is not None and issuer != provider.issuer:
            raise OidcStateError("the answer comes from another provider")
        if error is not None:
            if error == "access_denied":
                raise OidcAccessDeniedError("the sign-in was declined at the provider")
            shown = error if _OAUTH_ERROR.fullmatch(error) else "an unknown error"
            raise OidcProviderError(f"the provider answered {shown}")
        if not code:
            raise OidcProviderError("the provider sent no authorization code")
        id_token = await provider.redeem_code(
            code, self.redirect_uri(provider), pkce_verifier(self._secret, state)
        )
        claims = await self._verify(provider, id_token, request_nonce(self._secret, state))
        value = identity_value(provider.issuer, claims.subject, max_chars=IDENTITY_VALUE_LENGTH)
        label = claims.email or claims.preferred_username or claims.name or claims.subject
        return {
            "p": provider.slug,
            "purpose": record["purpose"],
            "user": record["user"],
            "browser": record.get("browser", ""),
            "app": record.get("app", ""),
            "value": value,
            "display": _clean(f"{provider.settings.label}: {label}", _DISPLAY_CHARS),
            "nickname": _clean(claims.name or claims.preferred_username, _NICKNAME_CHARS),
        }

    async def _verify(self, provider: OidcProvider, id_token: str, nonce: str) -> IdTokenClaims:
        started = time.monotonic()
        s = provider.settings
        jwks = await provider.jwks()
        try:
            return verify_id_token(
                id_token, jwks, issuer=s.issuer, client_id=s.client_id, nonce=nonce
            )
        except UnknownSigningKeyError:
            # The provider may have rotated its keys since they were cached: once more.
            jwks = await provider.jwks(fetched_after=started)
            return verify_id_token(
                id_token, jwks, issuer=s.issuer, client_id=s.client_id, nonce=nonce
            )

    async def _spend_code(self, code: str, app_verifier: str) -> dict[str, str]:
        record = await self._spend("oidc:code", code)
        if record is None:
            raise OidcCodeError("this code is unknown, expired or used; sign in again")
        if not constant_time_equal(pkce_challenge(app_verifier), record.get("app", "")):
            raise OidcCodeError("this code was not asked for with this app_verifier")
        return record

    async def _spend(self, namespace: str, token: str) -> dict[str, str] | None:
        """Read and delete a single-use record; only the caller whose delete wins gets it."""
        if not _TOKEN.fullmatch(token):
            return None
        key = f"{namespace}:{_digest(token)}"
        raw = await self._kv.get(key)
        if raw is None or not await self._kv.delete(key):
            return None
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(record, dict) or not all(isinstance(v, str) for v in record.values()):
            return None
        return record

    async def _limit(self, client: ClientInfo) -> None:
        key = f"rl:oidc-start:ip:{client.ip}"
        if await self._kv.incr(key, ttl=HOUR) > self._settings.oidc_starts_per_ip_per_hour:
            wait = int(await self._kv.ttl(key) or HOUR) + 1
            raise RateLimitedError(
                f"too many sign-ins started from this address; try again in {wait} s",
                retry_after=wait,
            )

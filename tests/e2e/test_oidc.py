"""OpenID Connect sign-in and linking on a real node against a real (fake) provider.

The provider (tests/support/oidc_provider.py) is an HTTP server on a loopback
port; the node (PostgreSQL, Redis) talks to it over HTTP as it would to
Google or Keycloak. A test plays the browser: it opens the start URL and
follows the redirects between node and provider, keeping cookies, until the
node sends it to the app's return URL, whose fragment it reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import httpx
import pytest

from client import ParleyApiError, ParleyClient
from tests.e2e.conftest import BASE_ENV
from tests.support.clients import signed_in_client
from tests.support.oidc_provider import FakeOidcProvider, Tenant, free_port
from tests.support.server import ServerProcess
from tests.support.services import (
    REDIS_E2E_DB,
    create_postgres_database,
    drop_postgres_database,
    redis_url,
)

APP = "https://app.parley.test/auth/done"
NATIVE_APP = "parley-test:/oauth"
TIMEOUT = 1.5
EXCHANGE = "/v1/auth/oidc/exchange"
LINK_FINISH = "/v1/me/identities/oidc/finish"
# The app's own PKCE pair (the tests play one app): the challenge at each start, the
# verifier with each code.
APP_VERIFIER = "test-app-verifier-" + "v" * 40
APP_CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(APP_VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


class Provider:
    """The fake provider's tenants, by the slug the node knows them under."""

    def __init__(self, server: FakeOidcProvider) -> None:
        self.server = server
        self.main = server.tenant("main")
        self.post = server.tenant("post", auth_method="client_secret_post")
        self.public = server.tenant("public", client_secret=None, auth_method="none")
        self.slow = server.tenant("slow")
        self.slow.discovery = "hang"
        self.drip = server.tenant("drip")
        self.drip.discovery = "drip"
        self.huge = server.tenant("huge")
        self.huge.discovery = "huge"
        self.liar = server.tenant("liar")
        self.liar.discovery = "wrong_issuer"
        self.bigkeys = server.tenant("bigkeys")
        self.bigkeys.jwks = "huge"
        # Nothing listens there.
        self.down_issuer = f"http://127.0.0.1:{free_port()}/down"

    def by_slug(self) -> dict[str, Tenant]:
        return {
            "test": self.main,
            "post": self.post,
            "public": self.public,
            "slow": self.slow,
            "drip": self.drip,
            "huge": self.huge,
            "liar": self.liar,
            "bigkeys": self.bigkeys,
        }

    def settings(self) -> str:
        entries = [
            tenant.provider_settings(slug, "Test ID" if slug == "test" else "")
            for slug, tenant in self.by_slug().items()
        ]
        entries.append({"slug": "down", "issuer": self.down_issuer, "client_id": "x"})
        return json.dumps(entries)


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    server = await FakeOidcProvider().start()
    try:
        yield Provider(server)
    finally:
        await server.stop()


@pytest.fixture(scope="module")
async def node(
    provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerProcess]:
    """A node on PostgreSQL and Redis whose providers are the fake one's tenants."""
    database = await create_postgres_database("parley_oidc")
    run = time.monotonic_ns()
    server = ServerProcess({}, name="oidc-node")
    server.env.update(
        {
            **BASE_ENV,
            "PARLEY_DATABASE_URL": database,
            "PARLEY_DATABASE_AUTO_MIGRATE": "true",
            "PARLEY_REDIS_URL": redis_url(REDIS_E2E_DB),
            "PARLEY_REDIS_CHANNEL": f"parley-oidc-{run}",
            "PARLEY_REDIS_KEY_PREFIX": f"parley-oidc-{run}:",
            "PARLEY_AUTH_KEYS_DIR": str(tmp_path_factory.mktemp("oidc-keys")),
            "PARLEY_SERVER_PUBLIC_URL": server.url,
            "PARLEY_AUTH_OIDC_PROVIDERS": provider.settings(),
            "PARLEY_AUTH_OIDC_RETURN_URLS": f"https://app.parley.test/auth,{NATIVE_APP}",
            "PARLEY_AUTH_OIDC_TIMEOUT": str(TIMEOUT),
            "PARLEY_AUTH_OIDC_STARTS_PER_IP_PER_HOUR": "100000",
        }
    )
    for slug, tenant in provider.by_slug().items():
        tenant.redirect_uri = f"{server.url}/v1/auth/oidc/{slug}/callback"
    server.start()
    try:
        yield server
        # Every failure above was an answer, never a 500 with a traceback.
        assert "Traceback" not in server.log_text()
    finally:
        server.stop()
        await drop_postgres_database(database)


@pytest.fixture
def main(provider: Provider) -> Iterator[Tenant]:
    """The well-behaved tenant, reset after each test."""
    yield provider.main
    provider.main.reset()


@pytest.fixture
async def browser(node: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """One person's browser: its own cookies."""
    async with httpx.AsyncClient(base_url=node.url, timeout=15) as client:
        yield client


@pytest.fixture
async def http(node: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """The app's API client (no cookies shared with the browser)."""
    async with httpx.AsyncClient(base_url=node.url, timeout=15) as client:
        yield client


def start_url(slug: str = "test", return_to: str = APP) -> str:
    query = urlencode({"return_to": return_to, "app_challenge": APP_CHALLENGE})
    return f"/v1/auth/oidc/{slug}/start?{query}"


async def browse(browser: httpx.AsyncClient, url: str) -> httpx.Response:
    """Follow the node's and the provider's redirects, as a browser does.

    The answer that ends it: a redirect to the app (not followed), or anything
    that is not a redirect.
    """
    for _ in range(10):
        response = await browser.get(url)
        location = response.headers.get("location")
        if response.status_code != 302 or location is None or not location.startswith("http://"):
            return response
        url = location
    raise AssertionError("redirect loop")


def fragment(response: httpx.Response, return_to: str = APP) -> dict[str, str]:
    """The parameters the node put in the return URL's fragment."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    base, _, frag = location.partition("#")
    assert base == return_to
    return {k: v[0] for k, v in parse_qs(frag).items()}


async def sign_in_code(browser: httpx.AsyncClient, slug: str = "test", return_to: str = APP) -> str:
    params = fragment(await browse(browser, start_url(slug, return_to)), return_to)
    assert set(params) == {"parley_code"}, params
    return params["parley_code"]


async def exchange(http: httpx.AsyncClient, code: str) -> httpx.Response:
    return await http.post(
        EXCHANGE, json={"code": code, "app_verifier": APP_VERIFIER, "device_name": "oidc test"}
    )


async def sign_in(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, slug: str = "test"
) -> dict[str, Any]:
    response = await exchange(http, await sign_in_code(browser, slug))
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    assert "location" not in response.headers


async def row_counts(node: ServerProcess) -> dict[str, int]:
    conn = await asyncpg.connect(node.env["PARLEY_DATABASE_URL"], timeout=5)
    try:
        return {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("users", "identities", "sessions")
        }
    finally:
        await conn.close()


async def link_code(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, token: str, slug: str = "test"
) -> str:
    started = await http.post(
        f"/v1/me/identities/oidc/{slug}/start",
        json={"return_to": APP, "app_challenge": APP_CHALLENGE},
        headers=bearer(token),
    )
    assert started.status_code == 200, started.text
    assert started.json()["expires_in"] == 600
    params = fragment(await browse(browser, started.json()["authorization_url"]))
    assert set(params) == {"parley_code"}, params
    return params["parley_code"]


@pytest.fixture
async def phone_user(node: ServerProcess) -> AsyncIterator[ParleyClient]:
    client = await signed_in_client(node, "phone-user", connect=False)
    try:
        yield client
    finally:
        await client.close()


# --- signing in -------------------------------------------------------------------------


async def test_providers_are_listed_for_sign_in_buttons(http: httpx.AsyncClient) -> None:
    """The providers list gives slugs and labels in configured order, and nothing secret."""
    response = await http.get("/v1/auth/oidc/providers")
    assert response.status_code == 200
    providers = response.json()["providers"]
    assert providers[0] == {"slug": "test", "display_name": "Test ID"}
    assert [p["slug"] for p in providers][1:4] == ["post", "public", "slow"]
    assert "s3cret" not in response.text and "issuer" not in response.text


async def test_first_sign_in_creates_the_account_and_the_next_finds_it(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, main: Tenant
) -> None:
    """Sign-up then sign-in with the same provider account reach the same Parley user."""
    first = await sign_in(browser, http)
    second = await sign_in(browser, http)
    assert first["new_user"] is True and second["new_user"] is False
    assert first["user_id"] == second["user_id"]
    assert first["session_id"] != second["session_id"]

    # Authorization code + PKCE (S256) + state + nonce, fresh for each sign-in.
    asked = main.authorize_requests[-2:]
    assert all(a["code_challenge_method"] == "S256" for a in asked)
    assert asked[0]["state"] != asked[1]["state"] and asked[0]["nonce"] != asked[1]["nonce"]
    assert asked[0]["code_challenge"] != asked[1]["code_challenge"]
    assert asked[0]["scope"] == "openid email profile"
    assert all(len(t["code_verifier"]) == 43 for t in main.token_requests[-2:])

    me = await http.get("/v1/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200 and me.json()["nickname"] == "Alice Example"
    listed = await http.get("/v1/me/identities", headers=bearer(second["access_token"]))
    assert [(i["kind"], i["display"], i["verified"]) for i in listed.json()["identities"]] == [
        ("oidc", "Test ID: alice@example.test", True)
    ]


async def test_sdk_signs_in_and_the_tokens_work_for_the_api_and_a_socket(
    node: ServerProcess, browser: httpx.AsyncClient, main: Tenant
) -> None:
    """The SDK's sign-in URL, exchange and tokens: an authenticated call and a socket connect."""
    async with ParleyClient(node.url, device_name="oidc-sdk") as client:
        assert (await client.oidc_providers())[0]["slug"] == "test"
        url = client.oidc_sign_in_url("test", APP)
        assert url.startswith(node.url)
        code = fragment(await browse(browser, url))["parley_code"]
        tokens = await client.exchange_oidc_code(code)
        assert client.user_id == tokens["user_id"]
        assert (await client.me())["id"] == tokens["user_id"]
        await client.connect()
        assert client.connected
        sessions = await client.sessions()
        assert [s["device_name"] for s in sessions] == ["oidc-sdk"]


async def test_the_sign_in_code_works_once(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, main: Tenant
) -> None:
    """The code in the return URL opens one session; a second exchange is refused."""
    code = await sign_in_code(browser)
    assert (await exchange(http, code)).status_code == 200
    assert_error(await exchange(http, code), 401, "oidc_code_invalid")


async def test_state_cannot_be_reused(
    node: ServerProcess, browser: httpx.AsyncClient, main: Tenant
) -> None:
    """Replaying the provider's callback (same state and code) is a 400, with no redirect."""
    started = await browser.get(start_url())
    at_provider = await browser.get(started.headers["location"])
    callback = at_provider.headers["location"]
    assert callback.startswith(f"{node.url}/v1/auth/oidc/test/callback?")
    assert "parley_code" in fragment(await browser.get(callback))
    assert_error(await browser.get(callback), 400, "oidc_state_invalid")
    for state in ("", "x" * 43, "not-a-state"):
        assert_error(
            await browser.get("/v1/auth/oidc/test/callback", params={"state": state, "code": "c"}),
            400,
            "oidc_state_invalid",
        )


async def test_a_callback_opened_in_another_browser_is_refused(
    node: ServerProcess, browser: httpx.AsyncClient, main: Tenant
) -> None:
    """Login CSRF: a callback URL started in the attacker's browser signs nobody in elsewhere."""
    started = await browser.get(start_url())
    cookie = started.headers["set-cookie"].lower()
    assert cookie.startswith("parley_oidc_browser=")
    assert all(part in cookie for part in ("httponly", "samesite=lax", "path=/v1/auth/oidc/"))
    at_provider = await browser.get(started.headers["location"])
    before = await row_counts(node)
    async with httpx.AsyncClient(timeout=15) as victim:
        answer = await victim.get(at_provider.headers["location"])
    assert fragment(answer) == {"parley_error": "oidc_state_invalid"}
    assert await row_counts(node) == before


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.test/auth/done",
        "https://app.parley.test.evil.test/auth/done",
        "https://app.parley.test@evil.test/auth/done",
        "https://app.parley.test:8443/auth/done",
        "http://app.parley.test/auth/done",
        "https://app.parley.test/authority",
        "https://app.parley.test/auth/../admin",
        "https://app.parley.test/auth/%2e%2e/admin",
        "https://app.parley.test/auth/done#x",
        "https://app.parley.test\\@evil.test/auth",
        "javascript:alert(1)//https://app.parley.test/auth",
        "//evil.test/auth",
        "/auth/done",
        "parley-test:/other",
        "x" * 3000,
    ],
)
async def test_return_urls_off_the_allow_list_are_refused(
    browser: httpx.AsyncClient,
    http: httpx.AsyncClient,
    main: Tenant,
    return_to: str,
    phone_user: ParleyClient,
) -> None:
    """A return URL the operator did not allow is a 4xx: no redirect, no provider contacted."""
    asked = len(main.authorize_requests)
    response = await browser.get("/v1/auth/oidc/test/start", params={"return_to": return_to})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] in ("oidc_return_url_not_allowed", "invalid_request")
    assert "location" not in response.headers and "set-cookie" not in response.headers
    linked = await http.post(
        "/v1/me/identities/oidc/test/start",
        json={"return_to": return_to, "app_challenge": APP_CHALLENGE},
        headers=bearer(str(phone_user.access_token)),
    )
    assert linked.status_code == 422, linked.text
    assert len(main.authorize_requests) == asked


@pytest.mark.parametrize(
    "return_to",
    [
        APP,
        "https://app.parley.test/auth",
        "https://app.parley.test/auth/x?y=1",
        NATIVE_APP + "/done",
    ],
)
async def test_allowed_return_urls_get_the_code(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, main: Tenant, return_to: str
) -> None:
    """Return URLs under an allowed prefix (web or native app scheme) get the code."""
    code = await sign_in_code(browser, return_to=return_to)
    assert (await exchange(http, code)).status_code == 200


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
async def test_other_signing_algorithms_sign_in(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, main: Tenant, alg: str
) -> None:
    """ID tokens signed with P-256 or Ed25519 keys of the JWKS are accepted too."""
    main.signing_alg = alg
    assert (await sign_in(browser, http))["new_user"] is True


@pytest.mark.parametrize("slug", ["post", "public"])
async def test_client_secret_post_and_public_clients(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, provider: Provider, slug: str
) -> None:
    """client_secret_post (as the discovery document asks) and a public client sign in."""
    tokens = await sign_in(browser, http, slug)
    assert tokens["new_user"] is True
    tenant = provider.by_slug()[slug]
    assert ("client_secret" in tenant.token_requests[-1]) is (slug == "post")


# --- misbehaving providers ----------------------------------------------------------------


async def assert_refused(node: ServerProcess, browser: httpx.AsyncClient, error: str) -> None:
    before = await row_counts(node)
    assert fragment(await browse(browser, start_url())) == {"parley_error": error}
    assert await row_counts(node) == before


@pytest.mark.parametrize(
    "mode",
    [
        "wrong_aud",
        "wrong_iss",
        "bad_signature",
        "alg_none",
        "alg_hs256",
        "expired",
        "future_iat",
        "wrong_nonce",
        "no_nonce",
        "unknown_kid",
        "extra_aud_no_azp",
        "wrong_azp",
    ],
)
async def test_invalid_id_tokens_are_refused(
    node: ServerProcess, browser: httpx.AsyncClient, main: Tenant, mode: str
) -> None:
    """Each broken ID token sends the browser back with an error and opens no session."""
    main.id_token = mode
    await assert_refused(node, browser, "oidc_id_token_invalid")


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        ("500", "oidc_provider_unavailable"),
        ("hang", "oidc_provider_unavailable"),
        ("drip", "oidc_provider_unavailable"),
        ("huge", "oidc_provider_error"),
        ("not_json", "oidc_provider_error"),
        ("no_id_token", "oidc_provider_error"),
        ("invalid_grant", "oidc_provider_error"),
    ],
)
async def test_token_endpoint_failures_are_refused(
    node: ServerProcess, browser: httpx.AsyncClient, main: Tenant, behaviour: str, error: str
) -> None:
    """A token endpoint that fails, hangs, drips or floods: an error, in bounded time."""
    main.token_endpoint = behaviour
    started = time.monotonic()
    await assert_refused(node, browser, error)
    assert time.monotonic() - started < TIMEOUT + 3


async def test_declined_at_the_provider(
    node: ServerProcess, browser: httpx.AsyncClient, main: Tenant
) -> None:
    """The person said no at the provider: back to the app with oidc_access_denied."""
    main.authorize = "deny"
    await assert_refused(node, browser, "oidc_access_denied")


async def test_an_answer_naming_another_issuer_is_refused(
    node: ServerProcess, browser: httpx.AsyncClient, main: Tenant
) -> None:
    """RFC 9207: a callback whose `iss` is another provider's is refused (mix-up)."""
    main.authorize = "wrong_iss_param"
    await assert_refused(node, browser, "oidc_state_invalid")


@pytest.mark.parametrize("slug", ["down", "slow", "drip"])
async def test_unreachable_provider_sends_the_browser_back_with_an_error(
    browser: httpx.AsyncClient, slug: str
) -> None:
    """A provider that is down, hangs or drips: back to the app with
    oidc_provider_unavailable within the timeout, never to the provider."""
    started = time.monotonic()
    response = await browser.get(start_url(slug))
    assert fragment(response) == {"parley_error": "oidc_provider_unavailable"}
    assert time.monotonic() - started < TIMEOUT + 3


@pytest.mark.parametrize("slug", ["huge", "liar"])
async def test_unusable_discovery_document_sends_the_browser_back_with_an_error(
    browser: httpx.AsyncClient, slug: str
) -> None:
    """A discovery document over the size limit, or naming another issuer."""
    assert fragment(await browser.get(start_url(slug))) == {"parley_error": "oidc_provider_error"}


async def test_a_code_planted_in_another_browser_is_refused_there(
    node: ServerProcess, browser: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    """Login CSRF: a code someone got for their own sign-in, sent to a browser that started
    a sign-in of its own, is refused there; the browser that started it may spend its own."""
    async with httpx.AsyncClient(base_url=node.url, timeout=15) as victim:
        await victim.get(start_url())  # the victim's browser carries its sign-in cookie
        planted = await sign_in_code(browser)
        refused = await victim.post(EXCHANGE, json={"code": planted, "app_verifier": APP_VERIFIER})
        assert_error(refused, 401, "oidc_code_invalid")
    own = await browser.post(
        EXCHANGE, json={"code": await sign_in_code(browser), "app_verifier": APP_VERIFIER}
    )
    assert own.status_code == 200, own.text
    # Without the cookie (a native app's own HTTP client) the code is taken as before.
    assert (await exchange(http, await sign_in_code(browser))).status_code == 200


async def test_a_huge_key_set_is_refused(
    node: ServerProcess, browser: httpx.AsyncClient, provider: Provider
) -> None:
    """A JWKS over the size limit (sent chunked, without a length) is a provider error."""
    before = await row_counts(node)
    answer = await browse(browser, start_url("bigkeys"))
    assert fragment(answer) == {"parley_error": "oidc_provider_error"}
    assert await row_counts(node) == before


async def test_discovery_and_keys_are_cached_and_keys_refetched_once_on_rotation(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, main: Tenant
) -> None:
    """Keys rotated at the provider are fetched again once; an unknown kid only once more."""
    await sign_in(browser, http)
    discovery, keys = main.discovery_fetches, main.jwks_fetches
    await sign_in(browser, http)
    assert (main.discovery_fetches, main.jwks_fetches) == (discovery, keys)

    main.rotate_keys()
    await sign_in(browser, http)
    assert main.jwks_fetches == keys + 1
    await sign_in(browser, http)
    assert main.jwks_fetches == keys + 1

    main.id_token = "unknown_kid"
    assert fragment(await browse(browser, start_url())) == {"parley_error": "oidc_id_token_invalid"}
    assert main.jwks_fetches == keys + 2
    assert main.discovery_fetches == discovery


# --- linking ------------------------------------------------------------------------------


async def test_linking_then_signing_in_reaches_the_linked_account(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, main: Tenant, phone_user: ParleyClient
) -> None:
    """An identity linked to a phone account: signing in with it opens that account."""
    link_url = await phone_user.start_oidc_link("test", APP)
    code = fragment(await browse(browser, link_url))["parley_code"]
    linked = await phone_user.finish_oidc_link(code)
    assert (linked["kind"], linked["display"]) == ("oidc", "Test ID: alice@example.test")
    kinds = sorted(i["kind"] for i in await phone_user.identities())
    assert kinds == ["oidc", "phone"]

    tokens = await sign_in(browser, http)
    assert tokens["user_id"] == phone_user.user_id and tokens["new_user"] is False
    # A link code works once, and a link finished twice is the same identity.
    with pytest.raises(ParleyApiError) as again:
        await phone_user.finish_oidc_link(code)
    assert again.value.code == "oidc_code_invalid"


async def test_linking_an_identity_of_another_account_is_409(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, main: Tenant, phone_user: ParleyClient
) -> None:
    """A provider account that already signs in to another Parley account cannot be linked."""
    owner = await sign_in(browser, http)
    code = await link_code(browser, http, str(phone_user.access_token))
    answer = await http.post(
        LINK_FINISH,
        json={"code": code, "app_verifier": APP_VERIFIER},
        headers=bearer(str(phone_user.access_token)),
    )
    assert_error(answer, 409, "identity_taken")
    assert (await sign_in(browser, http))["user_id"] == owner["user_id"]


async def test_link_and_sign_in_codes_do_not_cross(
    node: ServerProcess,
    browser: httpx.AsyncClient,
    http: httpx.AsyncClient,
    main: Tenant,
    phone_user: ParleyClient,
) -> None:
    """A link code serves only the account that started it; sign-in and link codes don't mix."""
    other = await signed_in_client(node, "other", connect=False)
    try:
        code = await link_code(browser, http, str(phone_user.access_token))
        answer = await http.post(
            LINK_FINISH,
            json={"code": code, "app_verifier": APP_VERIFIER},
            headers=bearer(str(other.access_token)),
        )
        assert_error(answer, 401, "oidc_code_invalid")
        assert_error(
            await exchange(http, await link_code(browser, http, str(phone_user.access_token))),
            401,
            "oidc_code_invalid",
        )
        sign_in_only = await sign_in_code(browser)
        answer = await http.post(
            LINK_FINISH,
            json={"code": sign_in_only, "app_verifier": APP_VERIFIER},
            headers=bearer(str(phone_user.access_token)),
        )
        assert_error(answer, 401, "oidc_code_invalid")
        assert sorted(i["kind"] for i in await phone_user.identities()) == ["phone"]
    finally:
        await other.close()


async def test_link_needs_a_signed_in_account(http: httpx.AsyncClient) -> None:
    """Starting or finishing a link without an access token is a 401."""
    started = await http.post(
        "/v1/me/identities/oidc/test/start", json={"return_to": APP, "app_challenge": APP_CHALLENGE}
    )
    assert started.status_code == 401
    finished = await http.post(LINK_FINISH, json={"code": "a" * 43, "app_verifier": APP_VERIFIER})
    assert finished.status_code == 401


# --- bad input ----------------------------------------------------------------------------


async def test_unknown_provider_is_404(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, phone_user: ParleyClient
) -> None:
    """A slug no provider has: 404 at start, callback and link start."""
    assert_error(await browser.get(start_url("nope")), 404, "oidc_provider_not_found")
    assert_error(
        await browser.get("/v1/auth/oidc/nope/callback", params={"state": "a" * 43}),
        404,
        "oidc_provider_not_found",
    )
    assert_error(
        await http.post(
            "/v1/me/identities/oidc/nope/start",
            json={"return_to": APP, "app_challenge": APP_CHALLENGE},
            headers=bearer(str(phone_user.access_token)),
        ),
        404,
        "oidc_provider_not_found",
    )


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/v1/auth/oidc/test/callback?" + urlencode({"state": "a" * 5000}), None),
        (
            "GET",
            "/v1/auth/oidc/test/callback?" + urlencode({"code": "c" * 9000, "state": "s"}),
            None,
        ),
        (
            "GET",
            "/v1/auth/oidc/test/callback?" + urlencode({"error": "e" * 500, "state": "s"}),
            None,
        ),
        ("GET", "/v1/auth/oidc/" + "p" * 300 + "/start?return_to=x", None),
        ("GET", "/v1/auth/oidc/test/start", None),
        ("POST", EXCHANGE, {"code": "short"}),
        ("POST", EXCHANGE, {"code": "a" * 43, "app_verifier": "v" * 43, "device_name": "d" * 500}),
        ("POST", EXCHANGE, {"code": "a" * 43, "app_verifier": "v" * 43, "extra": 1}),
        ("POST", EXCHANGE, {"code": "a" * 43}),
        ("POST", EXCHANGE, {"code": "a" * 43, "app_verifier": "v" * 42}),
        ("GET", "/v1/auth/oidc/test/start?" + urlencode({"return_to": APP}), None),
    ],
)
async def test_oversized_or_malformed_input_is_422(
    browser: httpx.AsyncClient, method: str, url: str, body: Any
) -> None:
    """Every input has a limit: over it, or malformed, is 422 invalid_request, never a 500."""
    assert_error(await browser.request(method, url, json=body), 422, "invalid_request")


async def test_a_code_needs_the_verifier_of_the_app_that_started_it(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, phone_user: ParleyClient
) -> None:
    """A code that reaches another app (a planted link, a custom scheme two apps claim) is
    refused without the starting app's verifier, for sign-ins and links alike."""
    other_app = {"app_verifier": "another-app-" + "w" * 40}
    stolen = await http.post(EXCHANGE, json={"code": await sign_in_code(browser), **other_app})
    assert_error(stolen, 401, "oidc_code_invalid")
    code = await link_code(browser, http, str(phone_user.access_token))
    answer = await http.post(
        LINK_FINISH, json={"code": code, **other_app}, headers=bearer(str(phone_user.access_token))
    )
    assert_error(answer, 401, "oidc_code_invalid")
    assert sorted(i["kind"] for i in await phone_user.identities()) == ["phone"]


async def test_a_well_formed_unknown_code_is_401(http: httpx.AsyncClient) -> None:
    """A code that was never issued (or expired) is 401 oidc_code_invalid."""
    assert_error(await exchange(http, "a" * 43), 401, "oidc_code_invalid")


async def test_starts_are_limited_per_client_address(provider: Provider, tmp_path: Path) -> None:
    """PARLEY_AUTH_OIDC_STARTS_PER_IP_PER_HOUR sign-ins a client may start, then 429."""
    node = ServerProcess({}, name="oidc-limited-node")
    node.env.update(
        {
            **BASE_ENV,
            "PARLEY_DATABASE_URL": f"sqlite://{tmp_path}/parley.sqlite3",
            "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys"),
            "PARLEY_SERVER_PUBLIC_URL": node.url,
            "PARLEY_AUTH_OIDC_PROVIDERS": json.dumps([provider.main.provider_settings("test")]),
            "PARLEY_AUTH_OIDC_STARTS_PER_IP_PER_HOUR": "2",
        }
    )
    node.start()
    try:
        async with httpx.AsyncClient(base_url=node.url, timeout=15) as browser:
            own = f"{node.url}/back"
            for _ in range(2):
                response = await browser.get(start_url(return_to=own))
                assert response.status_code == 302, response.text
                assert urlsplit(response.headers["location"]).path == "/main/authorize"
            limited = await browser.get(start_url(return_to=own))
            assert fragment(limited, own) == {"parley_error": "rate_limited"}
    finally:
        node.stop()

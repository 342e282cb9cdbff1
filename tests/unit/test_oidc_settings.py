"""OpenID Connect settings (PARLEY_AUTH_OIDC_*) and the return URL allow-list."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from config.errors import ConfigurationError
from config.settings import load_settings
from server.auth.return_urls import ReturnUrlNotAllowedError, ReturnUrlPolicy

PROVIDERS = "PARLEY_AUTH_OIDC_PROVIDERS"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every PARLEY_ variable except the test suite's own PARLEY_TEST_ ones."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith("PARLEY_") and not upper.startswith("PARLEY_TEST_"):
            monkeypatch.delenv(name)


def provider(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "slug": "google",
        "issuer": "https://accounts.google.com",
        "client_id": "123.apps.googleusercontent.com",
        "client_secret": "GOCSPX-secret",
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def load_error(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    return str(excinfo.value)


def test_no_providers_by_default() -> None:
    """Without PARLEY_AUTH_OIDC_PROVIDERS no provider is configured."""
    settings = load_settings().auth
    assert settings.oidc_providers == ()
    assert settings.oidc_return_urls == ""


def test_providers_parse_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON list of providers; scopes and label have defaults; the secret stays secret."""
    monkeypatch.setenv(
        PROVIDERS,
        json.dumps(
            [
                provider(),
                provider(
                    slug="keycloak",
                    issuer="http://127.0.0.1:8080/realms/parley",
                    client_secret=None,
                    scopes="openid  profile",
                    display_name="Company SSO",
                ),
            ]
        ),
    )
    google, keycloak = load_settings().auth.oidc_providers
    assert google.scopes == "openid email profile" and google.label == "google"
    assert google.client_secret is not None
    assert "GOCSPX" not in repr(google)
    assert keycloak.client_secret is None and keycloak.scopes == "openid profile"
    assert keycloak.label == "Company SSO"


@pytest.mark.parametrize("value", ["", "  ", "[]"])
def test_empty_provider_lists(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """An empty value or list means no provider."""
    monkeypatch.setenv(PROVIDERS, value)
    assert load_settings().auth.oidc_providers == ()


@pytest.mark.parametrize(
    "issuer",
    ["http://127.0.0.1:9000/x", "http://localhost:8080", "http://[::1]:8080/realms/a"],
)
def test_plain_http_issuers_only_on_loopback(monkeypatch: pytest.MonkeyPatch, issuer: str) -> None:
    """A loopback issuer may be plain http (tests and development)."""
    monkeypatch.setenv(PROVIDERS, json.dumps([provider(issuer=issuer)]))
    assert load_settings().auth.oidc_providers[0].issuer == issuer


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([provider(issuer="http://accounts.example.com")], "[0].issuer: must be https://"),
        ([provider(issuer="https://id.example.com?x=1")], "no query"),
        ([provider(issuer="https://user:pw@id.example.com")], "credentials"),
        ([provider(issuer="https://id.example.com/" + "a" * 200)], "at most 160"),
        ([provider(issuer="ftp://id.example.com")], "must be https://"),
        ([provider(slug="Google")], "[0].slug"),
        ([provider(slug="a/b")], "[0].slug"),
        ([provider(), provider(client_id="other")], "same slug"),
        ([provider(scopes="email profile")], 'must include "openid"'),
        ([provider(scopes='openid "quoted"')], "scope tokens"),
        ([provider(client_id="")], "[0].client_id"),
        ([provider(client_id=None)], "[0].client_id"),
        ([provider(unknown="x")], "[0].unknown"),
        ([provider(), provider(slug="b", issuer="nope")], "[1].issuer"),
        ({"slug": "google"}, "tuple"),
    ],
)
def test_bad_providers_name_the_variable_and_the_entry(
    monkeypatch: pytest.MonkeyPatch, entries: Any, message: str
) -> None:
    """Each broken provider entry stops start-up with a message naming variable and field."""
    error = load_error(monkeypatch, PROVIDERS, json.dumps(entries))
    assert PROVIDERS in error and message in error


def test_providers_that_are_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Malformed JSON names the variable, not just the section."""
    error = load_error(monkeypatch, PROVIDERS, '[{"slug": "google"')
    assert PROVIDERS in error and "not JSON" in error


@pytest.mark.parametrize(
    "value",
    [
        "https://app.example/auth,com.example.parley:/oauth",
        "http://127.0.0.1:5173",
        "https://app.example:8443/",
    ],
)
def test_return_url_prefixes_parse(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Origins, paths, loopback http and native app schemes are accepted prefixes."""
    monkeypatch.setenv("PARLEY_AUTH_OIDC_RETURN_URLS", value)
    assert load_settings().auth.oidc_return_urls == value


@pytest.mark.parametrize(
    "value",
    [
        "http://app.example",
        "javascript:alert(1)",
        "https://app.example/auth?x=1",
        "https://app.example/#x",
        "https://u@app.example",
        "https://app.example/a/../b",
        "https:///nohost",
        "app.example/auth",
    ],
)
def test_bad_return_url_prefixes(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Plain http off loopback, scripts, queries, fragments, credentials: refused at start-up."""
    error = load_error(monkeypatch, "PARLEY_AUTH_OIDC_RETURN_URLS", value)
    assert "PARLEY_AUTH_OIDC_RETURN_URLS" in error


def test_the_timeout_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_AUTH_OIDC_TIMEOUT must be positive and at most 60 s."""
    assert "PARLEY_AUTH_OIDC_TIMEOUT" in load_error(monkeypatch, "PARLEY_AUTH_OIDC_TIMEOUT", "0")
    assert "PARLEY_AUTH_OIDC_TIMEOUT" in load_error(monkeypatch, "PARLEY_AUTH_OIDC_TIMEOUT", "61")


# --- the allow-list -----------------------------------------------------------------------

POLICY = ReturnUrlPolicy(["https://app.example/auth", "https://web.example", "parley:/oauth"])


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example/auth",
        "https://app.example/auth/",
        "https://app.example/auth/done?x=1&y=2",
        "https://APP.example:443/auth/done",
        "https://web.example",
        "https://web.example/any/where",
        "parley:/oauth",
        "parley:/oauth/callback",
    ],
)
def test_urls_under_a_prefix_are_allowed(url: str) -> None:
    """Same scheme, host and port, and a path at or under the prefix's."""
    assert POLICY.check(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example/authority",
        "https://app.example/other",
        "https://app.example/auth/../admin",
        "https://app.example/auth/%2E%2E/admin",
        "https://app.example/auth/%2e%2e%2fadmin",
        "https://app.example:444/auth",
        "http://app.example/auth",
        "https://app.example.evil/auth",
        "https://evil.example/auth",
        "https://app.example@evil.example/auth",
        "https://evil.example\\@app.example/auth",
        "https://app.example/auth#frag",
        "https://app.example/auth/\u00e9",
        "https://app.example/auth/a b",
        "https://app.example/auth/\x00",
        "https://web.example:99999/",
        "parley:/other",
        "parley://oauth",
        "javascript:/oauth",
        "/auth",
        "",
        "https://app.example/auth/" + "a" * 3000,
    ],
)
def test_urls_off_the_list_are_refused(url: str) -> None:
    """Anything else is ReturnUrlNotAllowedError (a 422), never a redirect."""
    with pytest.raises(ReturnUrlNotAllowedError):
        POLICY.check(url)

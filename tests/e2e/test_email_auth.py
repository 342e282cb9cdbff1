"""E-mail + password accounts end to end: register, verify, sign in, reset, sessions.

Every test talks HTTP (and, where sessions end, a socket) to real nodes and reads
the mails the console e-mail provider writes to the node's log.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account as EthAccount

from client import ParleyApiError, ParleyClient
from client.sdk import SESSION_REVOKED
from tests.e2e.conftest import embedded_env
from tests.support.phones import fresh_phone
from tests.support.server import ServerProcess, link_token

# argon2id at its cheapest settings, so the many sign-ins here take milliseconds.
CHEAP_ARGON2 = {
    "PARLEY_AUTH_PASSWORD_TIME_COST": "1",
    "PARLEY_AUTH_PASSWORD_MEMORY_KIB": "8192",
    "PARLEY_AUTH_PASSWORD_PARALLELISM": "1",
}
FAILURES_PER_ACCOUNT = 3
# Every test signs in from 127.0.0.1; only the per-account limit is under test.
NO_IP_LIMIT = {
    "PARLEY_AUTH_LOGIN_FAILURES_PER_IP": "100000",
    "PARLEY_AUTH_VERIFY_RESEND_PER_IP_PER_HOUR": "100000",
}
RESEND = "/v1/auth/email/verify/resend"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One embedded node with cheap argon2 and a per-account limit of three failed sign-ins."""
    root: Path = tmp_path_factory.mktemp("email-auth-node")
    env = {
        **embedded_env(root),
        **CHEAP_ARGON2,
        **NO_IP_LIMIT,
        "PARLEY_AUTH_LOGIN_FAILURES_PER_ACCOUNT": str(FAILURES_PER_ACCOUNT),
    }
    server = ServerProcess(env, name="email-auth-node").start()
    yield server
    server.stop()


@pytest.fixture
async def http(node: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=30) as client:
        yield client


# -- helpers -------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    login: str
    email: str
    password: str


def new_account() -> Account:
    tag = uuid.uuid4().hex[:10]
    return Account(
        login=f"user_{tag}", email=f"user.{tag}@example.com", password=f"correct horse {tag}"
    )


def auth(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def next_email(node: ServerProcess, to: str, timeout: float = 10.0) -> dict[str, str]:
    return await asyncio.to_thread(node.next_email, to, timeout)


async def register(http: httpx.AsyncClient, account: Account, **extra: Any) -> httpx.Response:
    body = {"login": account.login, "password": account.password, "email": account.email}
    return await http.post("/v1/auth/email/register", json={**body, **extra})


async def register_unverified(
    http: httpx.AsyncClient, node: ServerProcess, account: Account
) -> str:
    """Register ``account``; the verification link's token."""
    response = await register(http, account)
    assert response.status_code == 202, response.text
    mail = await next_email(node, account.email)
    return link_token(mail["text"])


async def register_verified(http: httpx.AsyncClient, node: ServerProcess, account: Account) -> None:
    token = await register_unverified(http, node, account)
    response = await http.post("/v1/auth/email/verify", json={"token": token})
    assert response.status_code == 200, response.text


async def sign_in(
    http: httpx.AsyncClient, identifier: str, password: str, device_name: str = ""
) -> httpx.Response:
    return await http.post(
        "/v1/auth/email/login",
        json={"identifier": identifier, "password": password, "device_name": device_name},
    )


async def signed_in(
    http: httpx.AsyncClient, identifier: str, password: str, device_name: str = ""
) -> dict[str, Any]:
    response = await sign_in(http, identifier, password, device_name)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def request_reset_token(
    http: httpx.AsyncClient, node: ServerProcess, account: Account
) -> str:
    response = await http.post("/v1/auth/email/password-reset", json={"email": account.email})
    assert response.status_code == 202, response.text
    mail = await next_email(node, account.email)
    return link_token(mail["text"])


async def connected_client(node: ServerProcess, tokens: dict[str, Any]) -> ParleyClient:
    """An SDK client holding ``tokens`` (from a password sign-in), its socket connected."""
    client = ParleyClient(node.url)
    client.access_token = tokens["access_token"]
    client.refresh_token = tokens["refresh_token"]
    client.access_expires_at = time.time() + int(tokens["expires_in"])
    client.user_id = tokens["user_id"]
    client.session_id = tokens["session_id"]
    await client.connect()
    return client


def stored_password_hash(node: ServerProcess, login: str) -> str:
    path = node.env["PARLEY_DATABASE_URL"].removeprefix("sqlite://")
    with closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT password_hash FROM users WHERE login = ?", (login,)).fetchone()
    assert row is not None, f"no user {login}"
    return str(row[0])


def count_users(node: ServerProcess, login: str) -> int:
    path = node.env["PARLEY_DATABASE_URL"].removeprefix("sqlite://")
    with closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT count(*) FROM users WHERE login_key = ?", (login.lower(),))
        return int(row.fetchone()[0])


def link_count(node: ServerProcess, email: str) -> int:
    """Links (of any purpose, live, expired or used) naming ``email``."""
    path = node.env["PARLEY_DATABASE_URL"].removeprefix("sqlite://")
    with closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT count(*) FROM action_tokens WHERE email = ?", (email.lower(),))
        return int(row.fetchone()[0])


def age_links(node: ServerProcess, email: str, days: int) -> None:
    """Move the times of every link naming ``email`` ``days`` into the past."""
    path = node.env["PARLEY_DATABASE_URL"].removeprefix("sqlite://")
    with closing(sqlite3.connect(path)) as db, db:
        rows = db.execute(
            "SELECT id, created_at, expires_at, used_at FROM action_tokens WHERE email = ?",
            (email.lower(),),
        ).fetchall()
        assert rows, f"no link for {email}"
        for link_id, *times in rows:
            # Stored as Tortoise writes them: str() of an aware datetime.
            aged = [
                str(datetime.fromisoformat(t) - timedelta(days=days)) if t else None for t in times
            ]
            db.execute(
                "UPDATE action_tokens SET created_at = ?, expires_at = ?, used_at = ? WHERE id = ?",
                (*aged, link_id),
            )


async def resend(http: httpx.AsyncClient, email: str) -> httpx.Response:
    return await http.post(RESEND, json={"email": email})


def argon2_parameters(password_hash: str) -> str:
    """The ``m=...,t=...,p=...`` part of a PHC string ``$argon2id$v=19$m=,t=,p=$salt$tag``."""
    assert password_hash.startswith("$argon2id$"), password_hash
    return password_hash.split("$")[3]


# -- registration and verification ------------------------------------------------


async def test_register_verify_and_sign_in_with_login_or_email(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A registered, verified account signs in by login or e-mail, either in any case."""
    account = new_account()
    response = await register(http, account, first_name="Alice", last_name="Liddell")
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "email_sent", "email": account.email}
    mail = await next_email(node, account.email)
    assert mail["subject"] == "Confirm your e-mail for Parley"
    # The token rides in the fragment, which browsers never send: no access log,
    # proxy or Referer sees it. The page reads it from there.
    assert "/v1/auth/email/verify#token=" in mail["text"] and "?token=" not in mail["text"]
    page = await http.get("/v1/auth/email/verify")
    assert page.status_code == 200 and "location.hash" in page.text
    verified = await http.post("/v1/auth/email/verify", json={"token": link_token(mail["text"])})
    assert verified.status_code == 200, verified.text
    assert verified.json() == {"status": "verified", "email": account.email}

    user_ids = set()
    for identifier in (
        account.login,
        account.login.upper(),
        account.email,
        account.email.capitalize().replace("@example.com", "@Example.COM"),
    ):
        tokens = await signed_in(http, identifier, account.password)
        me = await http.get("/v1/me", headers=auth(tokens["access_token"]))
        assert me.status_code == 200, me.text
        user_ids.add(tokens["user_id"])
    assert len(user_ids) == 1
    identities = await http.get("/v1/me/identities", headers=auth(tokens["access_token"]))
    assert identities.status_code == 200, identities.text
    emails = [i for i in identities.json()["identities"] if i["kind"] == "email"]
    assert [(i["display"], i["verified"]) for i in emails] == [(account.email, True)]


async def test_verify_page_is_html_and_does_not_spend_the_token(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """GET on the mailed link shows an HTML page; the token still verifies by POST afterwards."""
    account = new_account()
    token = await register_unverified(http, node, account)
    for _ in range(2):  # a mail scanner prefetching the link, then the person
        page = await http.get("/v1/auth/email/verify", params={"token": token})
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "<!doctype html>" in page.text.lower() and token in page.text
    response = await http.post("/v1/auth/email/verify", json={"token": token})
    assert response.status_code == 200, response.text


async def test_verify_token_works_once(node: ServerProcess, http: httpx.AsyncClient) -> None:
    """A verification link can be spent once; the second POST is 4xx invalid_link."""
    account = new_account()
    token = await register_unverified(http, node, account)
    first = await http.post("/v1/auth/email/verify", json={"token": token})
    assert first.status_code == 200, first.text
    second = await http.post("/v1/auth/email/verify", json={"token": token})
    assert 400 <= second.status_code < 500, second.text
    assert error_code(second) == "invalid_link"


@pytest.mark.parametrize(
    "token", ["garbage", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "\u00e9", ""]
)
async def test_malformed_verify_token_is_422(http: httpx.AsyncClient, token: str) -> None:
    """A token not shaped like a link token is refused with 422, on the page and the POST."""
    response = await http.post("/v1/auth/email/verify", json={"token": token})
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_request"
    page = await http.get("/v1/auth/email/verify", params={"token": token})
    assert page.status_code == 422, page.text


async def test_well_formed_unknown_verify_token_is_422_invalid_link(
    http: httpx.AsyncClient,
) -> None:
    """A well-formed token that was never issued is 422 invalid_link."""
    response = await http.post("/v1/auth/email/verify", json={"token": "A" * 43})
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_link"


async def test_link_tokens_work_only_for_their_own_purpose(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A reset token cannot verify an e-mail, nor a verify token reset a password; both survive."""
    account = new_account()
    verify_token = await register_unverified(http, node, account)
    other = new_account()
    await register_verified(http, node, other)
    reset_token = await request_reset_token(http, node, other)

    as_verify = await http.post("/v1/auth/email/verify", json={"token": reset_token})
    assert as_verify.status_code == 422 and error_code(as_verify) == "invalid_link"
    as_reset = await http.post(
        "/v1/auth/email/password-reset/confirm",
        json={"token": verify_token, "password": "a brand new secret"},
    )
    assert as_reset.status_code == 422 and error_code(as_reset) == "invalid_link"

    # The misuse spent neither link.
    verified = await http.post("/v1/auth/email/verify", json={"token": verify_token})
    assert verified.status_code == 200, verified.text
    reset = await http.post(
        "/v1/auth/email/password-reset/confirm",
        json={"token": reset_token, "password": "a brand new secret"},
    )
    assert reset.status_code == 204, reset.text


# -- a fresh verification link --------------------------------------------------------


async def test_resent_link_replaces_the_unused_one(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """After a resend only the newest link verifies; older ones are invalid_link; login works."""
    account = new_account()
    first = await register_unverified(http, node, account)
    client = ParleyClient(node.url)
    try:
        answers = [await client.resend_verification_email(account.email) for _ in range(2)]
    finally:
        await client.close()
    assert answers == [{"status": "email_sent", "email": account.email}] * 2
    second, third = [await next_email(node, account.email) for _ in range(2)]
    assert second["subject"] == third["subject"] == "Confirm your e-mail for Parley"
    assert account.login in third["text"]
    newest = link_token(third["text"])
    assert len({first, link_token(second["text"]), newest}) == 3

    for old in (first, link_token(second["text"])):
        refused = await http.post("/v1/auth/email/verify", json={"token": old})
        assert refused.status_code == 422 and error_code(refused) == "invalid_link", refused.text
    still = await sign_in(http, account.login, account.password)
    assert still.status_code == 403 and error_code(still) == "email_not_verified"
    verified = await http.post("/v1/auth/email/verify", json={"token": newest})
    assert verified.status_code == 200, verified.text
    assert verified.json() == {"status": "verified", "email": account.email}
    await signed_in(http, account.email, account.password)


async def test_resend_answers_alike_whether_or_not_an_account_waits(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """Unknown, verified and waiting addresses get the same 202; only the waiting one a mail."""
    stranger, verified, waiting = new_account(), new_account(), new_account()
    await register_verified(http, node, verified)
    await register_unverified(http, node, waiting)
    answers = {a.email: await resend(http, a.email) for a in (stranger, verified, waiting)}
    for email, response in answers.items():
        assert response.status_code == 202, response.text
        assert response.json() == {"status": "email_sent", "email": email}
        assert response.headers["content-type"] == "application/json"
    mail = await next_email(node, waiting.email)
    assert mail["subject"] == "Confirm your e-mail for Parley"
    # The waiting address's mail is out; the others' would have been sent by now.
    for account in (stranger, verified):
        with pytest.raises(TimeoutError):
            await next_email(node, account.email, timeout=1.0)


async def test_resend_mails_each_account_waiting_on_the_address(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """Two registrations await one address: each gets a link naming its login."""
    first = new_account()
    second = Account(login=new_account().login, email=first.email, password="other password 2")
    await register_unverified(http, node, first)
    await register_unverified(http, node, second)
    response = await resend(http, first.email)
    assert response.status_code == 202, response.text
    mails = [await next_email(node, first.email) for _ in range(2)]
    for account, mail in zip((second, first), mails, strict=True):  # newest first
        assert account.login in mail["text"], mail["text"]
    verified = await http.post(
        "/v1/auth/email/verify", json={"token": link_token(mails[1]["text"])}
    )
    assert verified.status_code == 200, verified.text
    await signed_in(http, first.login, first.password)


async def test_resend_is_rate_limited_per_address_and_per_client(tmp_path: Path) -> None:
    """Past its limit an address, then the client, gets 429 rate_limited and no more mail."""
    env = {
        **embedded_env(tmp_path),
        **CHEAP_ARGON2,
        "PARLEY_AUTH_VERIFY_RESEND_PER_EMAIL_PER_HOUR": "2",
        "PARLEY_AUTH_VERIFY_RESEND_PER_IP_PER_HOUR": "6",
    }
    server = ServerProcess(env, name="resend-limits").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            waiting, stranger, other = new_account(), new_account(), new_account()
            await register_unverified(http, server, waiting)
            # Waiting or unknown, an address gets two resends an hour (client count 1-6).
            for account in (waiting, stranger):
                for _ in range(2):
                    response = await resend(http, account.email)
                    assert response.status_code == 202, response.text
                limited = await resend(http, account.email.upper())
                assert limited.status_code == 429, limited.text
                assert limited.json()["error"]["code"] == "rate_limited"
                assert limited.json().keys() == {"error"}
                assert 0 < int(limited.headers["Retry-After"]) <= 3601
            # The client's seventh request is refused, whatever the address.
            over = await resend(http, other.email)
            assert over.status_code == 429 and error_code(over) == "rate_limited", over.text
            for _ in range(2):
                await next_email(server, waiting.email)
            with pytest.raises(TimeoutError):
                await next_email(server, waiting.email, timeout=1.0)
    finally:
        server.stop()


async def test_concurrent_resends_leave_one_live_link(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    """On PostgreSQL and Redis, five resends at once still leave exactly one working link."""
    env = {
        **cluster_env,
        **CHEAP_ARGON2,
        **NO_IP_LIMIT,
        "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys"),
        "PARLEY_AUTH_VERIFY_RESEND_PER_EMAIL_PER_HOUR": "5",
    }
    server = ServerProcess(env, name="resend-postgres").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            account = new_account()
            first = await register_unverified(http, server, account)
            answers = await asyncio.gather(*(resend(http, account.email) for _ in range(5)))
            assert [a.status_code for a in answers] == [202] * 5
            tokens = [first]
            for _ in range(5):
                tokens.append(link_token((await next_email(server, account.email))["text"]))
            statuses = [
                (await http.post("/v1/auth/email/verify", json={"token": t})).status_code
                for t in tokens
            ]
            assert sorted(statuses) == [200] + [422] * 5, statuses
            await signed_in(http, account.login, account.password)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"email": None}, "invalid_request"),
        ({"email": ["a@example.com"]}, "invalid_request"),
        ({"email": "a" * 250 + "@example.com"}, "invalid_request"),
        ({"email": "alice@example.com\r\nBcc: victim@example.com"}, "invalid_request"),
        ({"email": "not-an-email"}, "invalid_email"),
        ({"email": "alice@example.com", "login": "alice"}, "invalid_request"),
    ],
    ids=["missing", "null", "list", "over-long", "header-injection", "not-an-email", "extra"],
)
async def test_bad_resend_body_is_422(
    http: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    """A resend body that is not one plain address is 422 in the error envelope, never a 500."""
    response = await http.post(RESEND, json=body)
    assert response.status_code == 422, response.text
    assert response.json().keys() == {"error"}
    assert response.json()["error"].keys() == {"code", "message"}
    assert error_code(response) == code


async def test_resend_still_finds_an_account_after_its_link_is_long_expired(
    tmp_path: Path,
) -> None:
    """Clean-up keeps the expired link of a never-verified account, so a resend still works."""
    env = {**embedded_env(tmp_path), **CHEAP_ARGON2, "PARLEY_AUTH_CLEANUP_INTERVAL": "0.2"}
    server = ServerProcess(env, name="resend-after-cleanup").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            waiting, done = new_account(), new_account()
            stale = await register_unverified(http, server, waiting)
            await register_verified(http, server, done)
            # Three days on: the first link expired two days ago, the other was used three.
            age_links(server, waiting.email, days=3)
            age_links(server, done.email, days=3)
            for _ in range(100):  # clean-up runs every 0.2 s; the used link shows a round ran
                if link_count(server, done.email) == 0:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("clean-up did not delete the used link")
            assert link_count(server, waiting.email) == 1

            response = await resend(http, waiting.email)
            assert response.status_code == 202, response.text
            fresh = link_token((await next_email(server, waiting.email))["text"])
            expired = await http.post("/v1/auth/email/verify", json={"token": stale})
            assert expired.status_code == 422 and error_code(expired) == "invalid_link"
            verified = await http.post("/v1/auth/email/verify", json={"token": fresh})
            assert verified.status_code == 200, verified.text
            await signed_in(http, waiting.login, waiting.password)
    finally:
        server.stop()


# -- sign-in before verification and failures --------------------------------------


async def test_unverified_account_with_right_password_is_403(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """Before the e-mail is verified, the right password gets 403 email_not_verified."""
    account = new_account()
    await register_unverified(http, node, account)
    response = await sign_in(http, account.login, account.password)
    assert response.status_code == 403, response.text
    assert error_code(response) == "email_not_verified"


async def test_unverified_account_with_wrong_password_is_401(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """Before the e-mail is verified, a wrong password is the usual 401 invalid_credentials."""
    account = new_account()
    await register_unverified(http, node, account)
    response = await sign_in(http, account.login, "not the password at all")
    assert response.status_code == 401, response.text
    assert error_code(response) == "invalid_credentials"


async def test_wrong_password_and_unknown_login_answer_alike(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A wrong password and an unknown login get byte-identical 401 bodies."""
    account = new_account()
    await register_verified(http, node, account)
    wrong = await sign_in(http, account.login, "not the password at all")
    unknown = await sign_in(http, new_account().login, "not the password at all")
    unknown_email = await sign_in(http, new_account().email, "not the password at all")
    assert wrong.status_code == unknown.status_code == unknown_email.status_code == 401
    assert wrong.json() == unknown.json() == unknown_email.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    assert wrong.content == unknown.content == unknown_email.content
    assert (
        wrong.headers.get("www-authenticate")
        == unknown.headers.get("www-authenticate")
        == unknown_email.headers.get("www-authenticate")
    )


@pytest.mark.parametrize(
    "identifier",
    [
        "a" * 65,  # longer than any login
        "a" * 254,
        "\u0130" * 128 + "@x.co",  # 133 characters, 261 once lower-cased
    ],
    ids=["login-65", "login-254", "email-lengthened-by-lower"],
)
async def test_identifiers_longer_than_any_account_are_unknown_not_500(
    node: ServerProcess, http: httpx.AsyncClient, identifier: str
) -> None:
    """What the form allows but no column can hold is an unknown account: 401, like any."""
    response = await sign_in(http, identifier, "not the password at all")
    assert response.status_code == 401, response.text
    assert error_code(response) == "invalid_credentials"


async def test_registering_a_taken_address_mails_instead_of_linking(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A second registration of a verified address: same 202, an 'already' mail, no account."""
    owner = new_account()
    await register_verified(http, node, owner)
    intruder = Account(login=new_account().login, email=owner.email, password="other password 1")
    response = await register(http, intruder)
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "email_sent", "email": owner.email}
    mail = await next_email(node, owner.email)
    assert mail["subject"] == "Your Parley account"
    assert "already" in mail["text"] and "token=" not in mail["text"]
    assert count_users(node, intruder.login) == 0
    refused = await sign_in(http, intruder.login, intruder.password)
    assert refused.status_code == 401 and error_code(refused) == "invalid_credentials"


async def test_taken_login_is_409(node: ServerProcess, http: httpx.AsyncClient) -> None:
    """A login already in use (compared case-insensitively) is 409 login_taken."""
    first = new_account()
    await register_unverified(http, node, first)
    second = Account(login=first.login.upper(), email=new_account().email, password="other pass 1")
    response = await register(http, second)
    assert response.status_code == 409, response.text
    assert error_code(response) == "login_taken"
    assert count_users(node, first.login) == 1


@pytest.mark.parametrize(
    "weak",
    [
        "9 chars",
        "one character",
        "the login",
        "the login in upper case",
        "the e-mail",
        "the e-mail's local part",
    ],
)
async def test_weak_password_is_422(http: httpx.AsyncClient, weak: str) -> None:
    """Passwords that are short, one repeated character, or the login/e-mail get 422."""
    account = new_account()
    password = {
        "9 chars": "abcdefgh9",
        "one character": "x" * 20,
        "the login": account.login,
        "the login in upper case": account.login.upper(),
        "the e-mail": account.email,
        "the e-mail's local part": account.email.split("@")[0],
    }[weak]
    response = await register(http, Account(account.login, account.email, password))
    assert response.status_code == 422, response.text
    assert error_code(response) == "weak_password"


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "alice@",
        "@example.com",
        "alice@localhost",
        "alice@example..com",
        "al ice@example.com",
        "alice@example.com\r\nBcc: victim@example.com",
        "alice@example.com,bob@example.com",
        "a" * 250 + "@example.com",
    ],
)
async def test_bad_email_is_422(http: httpx.AsyncClient, email: str) -> None:
    """An address that is not one plain e-mail address is refused with 422 at every door."""
    account = new_account()
    response = await register(http, Account(account.login, email, account.password))
    assert response.status_code == 422, response.text
    reset = await http.post("/v1/auth/email/password-reset", json={"email": email})
    assert reset.status_code == 422, reset.text
    again = await resend(http, email)
    assert again.status_code == 422, again.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/auth/email/register",
            {"login": "someone", "password": "long enough pass", "email": "s@example.com"},
        ),
        ("/v1/auth/email/verify", {"token": "A" * 43}),
        ("/v1/auth/email/login", {"identifier": "someone", "password": "long enough pass"}),
        ("/v1/auth/email/password-reset", {"email": "s@example.com"}),
        (RESEND, {"email": "s@example.com"}),
        ("/v1/auth/email/password-reset/confirm", {"token": "A" * 43, "password": "long pass 1"}),
    ],
)
async def test_unknown_fields_are_422(
    http: httpx.AsyncClient, path: str, body: dict[str, str]
) -> None:
    """A body with a field the endpoint does not know is refused with 422, naming the field."""
    response = await http.post(path, json={**body, "is_admin": True})
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_request"
    assert "is_admin" in response.json()["error"]["message"]


# -- password reset --------------------------------------------------------------


async def test_password_reset_for_unknown_address_sends_nothing(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A reset request for an address with no account answers the same 202 and mails nothing."""
    known = new_account()
    await register_verified(http, node, known)
    stranger = new_account()
    unknown = await http.post("/v1/auth/email/password-reset", json={"email": stranger.email})
    assert unknown.status_code == 202, unknown.text
    assert unknown.json() == {"status": "email_sent", "email": stranger.email}
    found = await http.post("/v1/auth/email/password-reset", json={"email": known.email})
    assert found.status_code == 202, found.text
    assert found.json().keys() == unknown.json().keys()
    # The known address's mail arrives; by then the unknown one would have been logged too.
    mail = await next_email(node, known.email)
    assert mail["subject"] == "Reset your Parley password"
    with pytest.raises(TimeoutError):
        await next_email(node, stranger.email, timeout=0.5)


async def test_password_reset_is_rate_limited_per_address_and_per_client(tmp_path: Path) -> None:
    """Past its limit an address, then the client, gets 429 rate_limited and no more mail, so
    nobody can bury an inbox under reset mails; unknown addresses count alike."""
    env = {
        **embedded_env(tmp_path),
        **CHEAP_ARGON2,
        "PARLEY_AUTH_PASSWORD_RESET_PER_EMAIL_PER_HOUR": "2",
        "PARLEY_AUTH_PASSWORD_RESET_PER_IP_PER_HOUR": "5",
    }
    server = ServerProcess(env, name="reset-limits").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            known, stranger = new_account(), new_account()
            await register_verified(http, server, known)
            for account in (known, stranger):
                for _ in range(2):
                    response = await http.post(
                        "/v1/auth/email/password-reset", json={"email": account.email}
                    )
                    assert response.status_code == 202, response.text
            limited = await http.post(
                "/v1/auth/email/password-reset", json={"email": known.email.upper()}
            )
            assert limited.status_code == 429 and error_code(limited) == "rate_limited"
            assert 0 < int(limited.headers["Retry-After"]) <= 3601
            # The client's sixth request is refused, whatever the address.
            over = await http.post(
                "/v1/auth/email/password-reset", json={"email": new_account().email}
            )
            assert over.status_code == 429 and error_code(over) == "rate_limited", over.text
            for _ in range(2):
                mail = await next_email(server, known.email)
                assert mail["subject"] == "Reset your Parley password"
            with pytest.raises(TimeoutError):
                await next_email(server, known.email, timeout=1.0)
    finally:
        server.stop()


async def test_password_reset_for_unverified_address_sends_nothing(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """An address registered but never verified gets no reset mail."""
    account = new_account()
    await register_unverified(http, node, account)
    response = await http.post("/v1/auth/email/password-reset", json={"email": account.email})
    assert response.status_code == 202, response.text
    with pytest.raises(TimeoutError):
        await next_email(node, account.email, timeout=1.0)


async def test_password_reset_replaces_password_and_ends_every_session(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A reset link sets a new password once and revokes earlier sessions, sockets included."""
    account = new_account()
    await register_verified(http, node, account)
    before = await signed_in(http, account.login, account.password, "old laptop")
    client = await connected_client(node, before)
    client.sio.reconnection = False  # the explicit connect() below checks the way back in
    try:
        token = await request_reset_token(http, node, account)
        page = await http.get("/v1/auth/email/password-reset/confirm", params={"token": token})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        new_password = "a completely new passphrase"
        response = await http.post(
            "/v1/auth/email/password-reset/confirm",
            json={"token": token, "password": new_password},
        )
        assert response.status_code == 204, response.text
        again = await http.post(
            "/v1/auth/email/password-reset/confirm",
            json={"token": token, "password": "yet another passphrase"},
        )
        assert again.status_code == 422 and error_code(again) == "invalid_link"

        old = await sign_in(http, account.login, account.password)
        assert old.status_code == 401 and error_code(old) == "invalid_credentials"
        await signed_in(http, account.email, new_password)

        me = await http.get("/v1/me", headers=auth(before["access_token"]))
        assert me.status_code == 401, me.text
        assert error_code(me) == "session_revoked"
        data = await client.next_event(SESSION_REVOKED, 5)
        assert data["session_id"] == before["session_id"]
        for _ in range(50):
            if not client.connected:
                break
            await asyncio.sleep(0.1)
        assert not client.connected, "the socket of the revoked session was dropped"
        with pytest.raises(ParleyApiError) as reconnect:
            await client.connect(timeout=5)
        assert reconnect.value.code == "session_revoked"
    finally:
        await client.close()


async def test_weak_password_on_reset_keeps_the_link(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A reset refused for a weak password leaves the link usable for a good password."""
    account = new_account()
    await register_verified(http, node, account)
    token = await request_reset_token(http, node, account)
    weak = await http.post(
        "/v1/auth/email/password-reset/confirm", json={"token": token, "password": account.login}
    )
    assert weak.status_code == 422 and error_code(weak) == "weak_password", weak.text
    good = await http.post(
        "/v1/auth/email/password-reset/confirm",
        json={"token": token, "password": "a strong new passphrase"},
    )
    assert good.status_code == 204, good.text


# -- signed-in account: e-mail and password ------------------------------------------


async def test_change_email_moves_sign_in_to_the_new_address(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """After the new address is verified, it signs in and the old one no longer does."""
    account = new_account()
    await register_verified(http, node, account)
    tokens = await signed_in(http, account.login, account.password)
    new_email = new_account().email
    response = await http.post(
        "/v1/me/email", json={"email": new_email}, headers=auth(tokens["access_token"])
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "email_sent", "email": new_email}
    mail = await next_email(node, new_email)
    # Until the link is used the old address still signs in, the new one does not.
    await signed_in(http, account.email, account.password)
    pending = await sign_in(http, new_email, account.password)
    assert pending.status_code == 401, pending.text

    verified = await http.post("/v1/auth/email/verify", json={"token": link_token(mail["text"])})
    assert verified.status_code == 200 and verified.json()["email"] == new_email
    await signed_in(http, new_email, account.password)
    old = await sign_in(http, account.email, account.password)
    assert old.status_code == 401 and error_code(old) == "invalid_credentials"
    identities = await http.get("/v1/me/identities", headers=auth(tokens["access_token"]))
    emails = [i for i in identities.json()["identities"] if i["kind"] == "email"]
    assert [(i["display"], i["verified"]) for i in emails] == [(new_email, True)]


async def test_registrations_mail_an_address_at_most_five_times_an_hour(
    http: httpx.AsyncClient,
) -> None:
    """Registering logins in a loop cannot bury someone's inbox in confirmation mails."""
    victim = new_account().email
    for i in range(5):
        response = await register(
            http, Account(f"{new_account().login}{i}", victim, "x" * 8 + "yz1")
        )
        assert response.status_code == 202, response.text
    over = await register(http, Account(new_account().login, victim.upper(), "x" * 8 + "yz1"))
    assert over.status_code == 429 and error_code(over) == "rate_limited", over.text
    assert int(over.headers["Retry-After"]) > 0
    assert (await register(http, new_account())).status_code == 202, "other addresses go on"


async def test_reset_links_die_when_the_password_or_address_changes(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A reset link stops working once another reset link was used, the password was set,
    or the address it was mailed to is no longer the account's."""
    account = new_account()
    await register_verified(http, node, account)
    for change in ("reset", "set password", "new address"):
        stale = await request_reset_token(http, node, account)
        password = f"{account.password} {change}"
        if change == "reset":
            fresh = await request_reset_token(http, node, account)
            used = await http.post(
                "/v1/auth/email/password-reset/confirm", json={"token": fresh, "password": password}
            )
            assert used.status_code == 204, used.text
        else:
            tokens = await signed_in(http, account.login, account.password)
            if change == "set password":
                response = await http.put(
                    "/v1/me/password",
                    json={"current_password": account.password, "new_password": password},
                    headers=auth(tokens["access_token"]),
                )
                assert response.status_code == 204, response.text
            else:
                moved = new_account().email
                response = await http.post(
                    "/v1/me/email", json={"email": moved}, headers=auth(tokens["access_token"])
                )
                assert response.status_code == 202, response.text
                link = link_token((await next_email(node, moved))["text"])
                verified = await http.post("/v1/auth/email/verify", json={"token": link})
                assert verified.status_code == 200, verified.text
                password = account.password
        refused = await http.post(
            "/v1/auth/email/password-reset/confirm",
            json={"token": stale, "password": f"{password} again"},
        )
        assert refused.status_code == 422, (change, refused.text)
        assert error_code(refused) == "invalid_link", change
        account = Account(account.login, account.email, password)
        if change == "new address":
            break


@pytest.mark.parametrize("first_way", ["phone", "ethereum"])
async def test_phone_or_wallet_account_adds_email_and_password(
    node: ServerProcess, http: httpx.AsyncClient, first_way: str
) -> None:
    """An account without e-mail adds one, verifies it, sets a password and signs in with both."""
    client = ParleyClient(node.url)
    try:
        if first_way == "phone":
            phone = fresh_phone()
            start = await client.start_phone_sign_in(phone)
            await client.verify_phone(start["request_id"], node.next_sms_code(phone))
        else:
            await client.sign_in_with_ethereum(EthAccount.create())
        assert [i["kind"] for i in await client.identities()] == [first_way]
        email, password = new_account().email, "a passphrase of my own"

        assert await client.change_email(email) == {"status": "email_sent", "email": email}
        token = link_token((await next_email(node, email))["text"])
        assert await client.verify_email(token) == {"status": "verified", "email": email}
        emails = [i for i in await client.identities() if i["kind"] == "email"]
        assert [(i["display"], i["verified"]) for i in emails] == [(email, True)]
        no_password = await sign_in(http, email, password)
        assert no_password.status_code == 401 and error_code(no_password) == "invalid_credentials"

        await client.set_password(password)  # the first password needs no current one
        tokens = await signed_in(http, email, password)
        assert tokens["user_id"] == client.user_id
        # A resend for an address an account has verified mails nothing.
        assert (await resend(http, email)).status_code == 202
        with pytest.raises(TimeoutError):
            await next_email(node, email, timeout=1.0)
    finally:
        await client.close()


async def test_change_password_needs_the_current_one(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """PUT /v1/me/password: a wrong current password is 401; the right one changes it (204)."""
    account = new_account()
    await register_verified(http, node, account)
    tokens = await signed_in(http, account.login, account.password)
    headers = auth(tokens["access_token"])
    new_password = "my second passphrase"
    wrong = await http.put(
        "/v1/me/password",
        json={"current_password": "not the password", "new_password": new_password},
        headers=headers,
    )
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_credentials", wrong.text
    missing = await http.put(
        "/v1/me/password", json={"new_password": new_password}, headers=headers
    )
    assert missing.status_code == 401, missing.text
    await signed_in(http, account.login, account.password)  # still the old password

    right = await http.put(
        "/v1/me/password",
        json={"current_password": account.password, "new_password": new_password},
        headers=headers,
    )
    assert right.status_code == 204, right.text
    await signed_in(http, account.login, new_password)
    old = await sign_in(http, account.login, account.password)
    assert old.status_code == 401 and error_code(old) == "invalid_credentials"


# -- limits and cost -----------------------------------------------------------------


async def test_failed_sign_ins_are_rate_limited_per_account(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """After three wrong passwords even the right one is refused: 429 with Retry-After."""
    account = new_account()
    await register_verified(http, node, account)
    for _ in range(FAILURES_PER_ACCOUNT):
        wrong = await sign_in(http, account.login, "not the password at all")
        assert wrong.status_code == 401, wrong.text
    limited = await sign_in(http, account.login, account.password)
    assert limited.status_code == 429, limited.text
    assert error_code(limited) == "rate_limited"
    retry_after = int(limited.headers["Retry-After"])
    assert 0 < retry_after <= 15 * 60 + 1
    # The identifier is compared case-insensitively, so changing case does not reset it.
    shouting = await sign_in(http, account.login.upper(), account.password)
    assert shouting.status_code == 429, shouting.text


async def test_argon2_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """With the default argon2 cost, /healthz answers fast while 20 sign-ins hash in threads."""
    server = ServerProcess({**embedded_env(tmp_path), **NO_IP_LIMIT}, name="argon2-default").start()
    try:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=60) as http,
            httpx.AsyncClient(base_url=server.url, timeout=60) as probe,
        ):
            account = new_account()
            await register_verified(http, server, account)
            assert argon2_parameters(stored_password_hash(server, account.login)) == (
                "m=65536,t=3,p=4"
            )
            assert (await probe.get("/healthz")).status_code == 200  # open the connection

            async def one_sign_in(i: int) -> int:
                if i % 2:
                    response = await sign_in(http, account.login, account.password)
                else:
                    response = await sign_in(http, f"nobody_{i}_{uuid.uuid4().hex[:6]}", "wrong pw")
                return response.status_code

            latencies: list[float] = []
            done = asyncio.Event()

            async def poll_health() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    response = await probe.get("/healthz")
                    latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200
                    await asyncio.sleep(0.02)

            poller = asyncio.create_task(poll_health())
            started = time.perf_counter()
            statuses = await asyncio.gather(*(one_sign_in(i) for i in range(20)))
            total = time.perf_counter() - started
            done.set()
            await poller
    finally:
        server.stop()
    assert sorted(statuses) == [200] * 10 + [401] * 10
    assert len(latencies) >= 5, (latencies, total)
    # By default two hashes run at once with four lanes each: eight argon2 threads share
    # the CPUs with the loop's thread, so on a busy 2-vCPU host a probe now and then
    # waits for a CPU although the loop is free. The 95th percentile ignores those.
    p95 = statistics.quantiles(latencies, n=20)[-1]
    assert p95 < 0.25, f"95th percentile /healthz took {p95:.3f}s during the sign-ins"
    assert total >= 4 * p95, f"sign-ins took {total:.3f}s, p95 /healthz {p95:.3f}s"
    # The bounds above alone pass even with argon2 on the loop when one hash takes well under
    # 250 ms (about 150 ms on a 2-vCPU box). A loop that hashed would hold a typical probe for
    # about one hash, total / 20; a free loop answers it in a few milliseconds.
    typical = statistics.median(latencies)
    assert typical < total / 60, f"median /healthz {typical:.3f}s, sign-ins {total:.3f}s"


# -- sessions --------------------------------------------------------------------------


async def test_sessions_are_listed_and_another_can_be_revoked(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """Two sign-ins are two sessions (one current); deleting the other revokes its token."""
    account = new_account()
    await register_verified(http, node, account)
    phone = await signed_in(http, account.login, account.password, "phone")
    laptop = await signed_in(http, account.email, account.password, "laptop")
    listed = await http.get("/v1/sessions", headers=auth(phone["access_token"]))
    assert listed.status_code == 200, listed.text
    sessions = {s["id"]: s for s in listed.json()["sessions"]}
    assert sessions.keys() == {phone["session_id"], laptop["session_id"]}
    assert [s["id"] for s in sessions.values() if s["current"]] == [phone["session_id"]]
    assert sessions[laptop["session_id"]]["device_name"] == "laptop"

    deleted = await http.delete(
        f"/v1/sessions/{laptop['session_id']}", headers=auth(phone["access_token"])
    )
    assert deleted.status_code == 204, deleted.text
    me = await http.get("/v1/me", headers=auth(laptop["access_token"]))
    assert me.status_code == 401 and error_code(me) == "session_revoked", me.text
    listed = await http.get("/v1/sessions", headers=auth(phone["access_token"]))
    assert [s["id"] for s in listed.json()["sessions"]] == [phone["session_id"]]
    again = await http.delete(
        f"/v1/sessions/{laptop['session_id']}", headers=auth(phone["access_token"])
    )
    assert again.status_code == 404, again.text


async def test_deleting_an_unknown_or_foreign_session_is_404(
    node: ServerProcess, http: httpx.AsyncClient
) -> None:
    """Deleting an unknown or another account's session is 404 and revokes nothing."""
    account, other = new_account(), new_account()
    await register_verified(http, node, account)
    await register_verified(http, node, other)
    tokens = await signed_in(http, account.login, account.password)
    others = await signed_in(http, other.login, other.password)
    for session_id in (str(uuid.uuid4()), others["session_id"]):
        response = await http.delete(
            f"/v1/sessions/{session_id}", headers=auth(tokens["access_token"])
        )
        assert response.status_code == 404, response.text
        assert error_code(response) == "session_not_found"
    me = await http.get("/v1/me", headers=auth(others["access_token"]))
    assert me.status_code == 200, me.text


async def test_logout_ends_the_session(node: ServerProcess, http: httpx.AsyncClient) -> None:
    """POST /v1/auth/logout is 204; the access and refresh tokens stop working."""
    account = new_account()
    await register_verified(http, node, account)
    tokens = await signed_in(http, account.login, account.password)
    response = await http.post("/v1/auth/logout", headers=auth(tokens["access_token"]))
    assert response.status_code == 204, response.text
    me = await http.get("/v1/me", headers=auth(tokens["access_token"]))
    assert me.status_code == 401 and error_code(me) == "session_revoked", me.text
    refreshed = await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401, refreshed.text


# -- argon2 parameters change --------------------------------------------------------


async def test_sign_in_rehashes_with_new_argon2_parameters(tmp_path: Path) -> None:
    """A node restarted with other argon2 parameters rehashes the password at the next sign-in."""
    env = {**embedded_env(tmp_path), **CHEAP_ARGON2}
    account = new_account()
    first = ServerProcess(env, name="argon2-before").start()
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            await register_verified(http, first, account)
            await signed_in(http, account.login, account.password)
    finally:
        first.stop()
    before = stored_password_hash(first, account.login)
    assert argon2_parameters(before) == "m=8192,t=1,p=1"

    stronger = {
        "PARLEY_AUTH_PASSWORD_TIME_COST": "2",
        "PARLEY_AUTH_PASSWORD_MEMORY_KIB": "9216",
        "PARLEY_AUTH_PASSWORD_PARALLELISM": "2",
    }
    second = ServerProcess({**env, **stronger}, name="argon2-after").start()
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
            await signed_in(http, account.login, account.password)
            after = stored_password_hash(second, account.login)
            assert argon2_parameters(after) == "m=9216,t=2,p=2"
            await signed_in(http, account.email, account.password)
            assert stored_password_hash(second, account.login) == after  # no needless rehash
            wrong = await sign_in(http, account.login, "not the password at all")
            assert wrong.status_code == 401, wrong.text
    finally:
        second.stop()

"""The web client (web/) in Debian's Chromium against a real node, with a Python SDK user.

``tests/web/drive.mjs`` drives four browser contexts with playwright-core (no
browser download): it asks this module, line by line over its stdin and
stdout, for sign-in codes and e-mailed links (read from the node's log, as a
person running ``make run`` would), for who the OpenID Connect provider
(tests/support/oidc_provider.py, on a loopback port) signs in next, and for
the SDK person's moves, which the Python SDK makes here. Afterwards the node's
database and media store are searched for every message text the people sent:
none may be there. The node tracks tips on a real local chain (ganache,
tests/support/ganache.py): a browser user's fake MetaMask signs and broadcasts
there, and this module funds wallets and mines.

Needs ``web/dist`` (``make web``), ``tests/web/node_modules``
(``npm ci --prefix tests/web``), ganache (``npm ci --prefix tests/js``) and
Chromium (``apt-get install chromium``); ``make test`` provides all four.
Under CI=true a missing Chromium fails these tests; elsewhere they are
deselected with a notice (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import ParleyClient
from tests.e2e.conftest import BASE_ENV
from tests.support import images
from tests.support.clients import signed_in_client
from tests.support.ganache import CHAIN_ID, Ganache
from tests.support.oidc_provider import FakeOidcProvider, ProviderUser, Tenant
from tests.support.phones import fresh_phone
from tests.support.server import ROOT, ServerProcess

WEB_DIST = ROOT / "web" / "dist"
DRIVER_DIR = ROOT / "tests" / "web"
SCREENSHOTS = DRIVER_DIR / "screenshots"
# drive.mjs waits at most 20 s for any one thing; this guards against a wedged run.
LINE_TIMEOUT = 90.0


# The link in a mail from the console e-mail provider (server/auth/email.py).
MAILED_LINK = re.compile(r"https?://\S+")
# The OpenID Connect provider as the node knows it; drive.mjs clicks "Continue with Test ID".
OIDC_SLUG = "test"
OIDC_NAME = "Test ID"


def chromium_path() -> str:
    return os.environ.get("PARLEY_TEST_CHROMIUM", "/usr/bin/chromium")


def require_build() -> None:
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail(f"{WEB_DIST} is not built: run `make web`", pytrace=False)


def require_tools() -> str:
    """The ``node`` binary once the client is built and the driver installed; else fail."""
    require_build()
    if not (DRIVER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail("run `npm ci --prefix tests/web` (or `make test`)", pytrace=False)
    if not os.access(chromium_path(), os.X_OK):
        pytest.fail(f"{chromium_path()} is missing: apt-get install -y chromium", pytrace=False)
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: install Node.js 20.19+", pytrace=False)
    return node


@pytest.fixture(scope="module")
def chain() -> Iterator[Ganache]:
    ganache = Ganache().start()
    yield ganache
    ganache.stop()


@pytest.fixture(scope="module")
async def oidc_provider() -> AsyncIterator[Tenant]:
    """A fake OpenID Connect provider whose authorize endpoint approves its user at once."""
    server = await FakeOidcProvider().start()
    try:
        yield server.tenant("web")
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def web_node(
    tmp_path_factory: pytest.TempPathFactory, chain: Ganache, oidc_provider: Tenant
) -> Iterator[tuple[ServerProcess, Path]]:
    """A node of its own (SQLite file, local media) serving web/dist; with its data directory."""
    root = tmp_path_factory.mktemp("web-node")
    node = ServerProcess({}, name="web-node")
    oidc_provider.redirect_uri = f"{node.url}/v1/auth/oidc/{OIDC_SLUG}/callback"
    node.env.update(
        {
            **BASE_ENV,
            "PARLEY_DATABASE_URL": f"sqlite://{root}/parley.sqlite3",
            "PARLEY_AUTH_KEYS_DIR": str(root / "keys"),
            "PARLEY_MEDIA_DIR": str(root / "media"),
            "PARLEY_SERVER_WEB_DIR": str(WEB_DIST),
            # Sign-In with Ethereum names the domain the browser is on.
            "PARLEY_SERVER_PUBLIC_URL": node.url,
            # Short-lived access tokens, so the clients refresh them during the run.
            "PARLEY_AUTH_ACCESS_TOKEN_TTL": "30",
            # Tips on the local chain: each transaction is mined at once (1 confirmation),
            # the test mines the second.
            "PARLEY_ETH_RPC_URL": chain.url,
            "PARLEY_ETH_CHAIN_ID": str(CHAIN_ID),
            "PARLEY_ETH_CONFIRMATIONS": "2",
            "PARLEY_ETH_POLL_SECONDS": "0.2",
            # Wallets sign in (chain 1) and link from the tip chain.
            "PARLEY_AUTH_ETHEREUM_CHAIN_IDS": f"1,{CHAIN_ID}",
            # Sign-in with the fake provider; it returns to the app's own URL, which the
            # default allow-list (the public URL's origin) covers.
            "PARLEY_AUTH_OIDC_PROVIDERS": json.dumps(
                [oidc_provider.provider_settings(OIDC_SLUG, OIDC_NAME)]
            ),
        }
    )
    node.start()
    yield node, root
    node.stop()


class PythonPeer:
    """The SDK person (Carol), the node's log, the chain and the provider, answering drive.mjs."""

    def __init__(self, node: ServerProcess, png: bytes, chain: Ganache, oidc: Tenant) -> None:
        self.node = node
        self.png = png
        self.chain = chain
        self.oidc = oidc
        self.carol: ParleyClient | None = None

    async def answer(self, ask: dict[str, Any]) -> Any:
        question = ask["ask"]
        if question == "fresh_phone":
            return fresh_phone()
        if question == "sms_code":
            return await asyncio.to_thread(self.node.next_sms_code, ask["phone"])
        if question == "email_link":
            mail = await asyncio.to_thread(self.node.next_email, ask["email"])
            link = MAILED_LINK.search(mail["text"])
            assert link is not None, f"no link in the mail to {ask['email']}: {mail['text']!r}"
            return link.group(0)
        if question == "fund":
            await asyncio.to_thread(self.chain.fund, ask["address"], int(ask["wei"]))
            return True
        if question == "mine":
            await asyncio.to_thread(self.chain.mine, int(ask["blocks"]))
            return True
        if question == "balance":
            return str(await asyncio.to_thread(self.chain.balance, ask["address"]))
        if question == "oidc_person":
            # Whom the provider signs in from now on: a new subject, so a new identity.
            self.oidc.user = ProviderUser(
                name=ask["name"], preferred_username=ask["username"], email=ask["email"]
            )
            return self.oidc.user.sub
        if question == "oidc_deny":
            self.oidc.authorize = "deny" if ask["deny"] else "approve"
            return self.oidc.authorize
        if question == "carol_start":
            self.carol = await signed_in_client(self.node, ask["nickname"])
            await self.carol.setup_device()
            return self.carol.user_id
        carol = self.carol
        assert carol is not None, "carol_start first"
        if question == "carol_open_direct":
            return (await carol.open_direct(ask["user_id"]))["id"]
        if question == "carol_group":
            return (await carol.create_group(ask["title"], ask["member_ids"]))["id"]
        if question == "carol_send":
            ack = await carol.send_encrypted(ask["conversation_id"], {"text": ask["text"]})
            return ack["seq"]
        if question == "carol_send_many":
            for i in range(1, ask["count"] + 1):
                await carol.send_encrypted(ask["conversation_id"], {"text": f"{ask['prefix']} {i}"})
            return ask["count"]
        if question == "carol_send_image":
            ack = await carol.send_attachment(
                ask["conversation_id"],
                self.png,
                content_type="image/png",
                name="python.png",
                caption=ask["caption"],
            )
            return ack["seq"]
        if question == "carol_receive":
            while True:
                message = await carol.next_message(timeout=30)
                if (
                    message["conversation_id"] == ask["conversation_id"]
                    and message["kind"] == "envelope"
                    and message["sender_id"] != carol.user_id
                ):
                    payload = await carol.open_message(message)
                    return {"text": payload.get("text"), "sender_id": message["sender_id"]}
        raise ValueError(f"unknown question {question!r}")

    async def close(self) -> None:
        if self.carol is not None:
            await self.carol.close()


async def drive(node: ServerProcess, peer: PythonPeer, png_path: Path) -> dict[str, Any]:
    """Run drive.mjs to its end, answering its questions; its final line."""
    stderr = png_path.with_suffix(".stderr")
    with stderr.open("wb") as errors:
        proc = await asyncio.create_subprocess_exec(
            require_tools(),
            str(DRIVER_DIR / "drive.mjs"),
            node.url,
            str(SCREENSHOTS),
            str(png_path),
            peer.chain.url,
            str(peer.chain.chain_id),
            cwd=DRIVER_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
        assert proc.stdin is not None and proc.stdout is not None
        final: dict[str, Any] | None = None
        steps: list[str] = []
        try:
            while final is None:
                line = await asyncio.wait_for(proc.stdout.readline(), LINE_TIMEOUT)
                if not line:
                    break
                message = json.loads(line)
                if "ask" in message:
                    try:
                        reply = {"id": message["id"], "answer": await peer.answer(message)}
                    except Exception as exc:
                        reply = {"id": message["id"], "error": f"{type(exc).__name__}: {exc}"}
                    proc.stdin.write(json.dumps(reply).encode() + b"\n")
                    await proc.stdin.drain()
                elif "step" in message:
                    steps.append(message["step"])
                elif "done" in message:
                    final = message
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            pytest.fail(f"drive.mjs silent for {LINE_TIMEOUT} s after: {steps[-3:]}")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    log = stderr.read_text(errors="replace")[-4000:]
    assert final is not None, f"drive.mjs ended without a result (exit {proc.returncode}):\n{log}"
    assert final["done"], f"{final.get('error')}\nsteps passed: {steps}\nstderr:\n{log}"
    assert proc.returncode == 0, log
    final["steps"] = steps
    return final


def statuses(node: ServerProcess, request: str) -> list[Any]:
    """The status of each ``METHOD /path`` request the node logged, in order."""
    return [
        r.get("status") for r in node.records if str(r.get("message")).startswith(f"{request} ")
    ]


def stored_bytes(root: Path) -> bytes:
    """Everything the node wrote: the SQLite file with its WAL, and every media blob."""
    return b"".join(path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file())


@pytest.mark.chromium
@pytest.mark.timeout(420)
async def test_two_browsers_and_the_sdk_chat_encrypted(
    web_node: tuple[ServerProcess, Path], chain: Ganache, oidc_provider: Tenant, tmp_path: Path
) -> None:
    """Four Chromium users (phone, wallet, e-mail, OpenID Connect) and an SDK user; no plaintext."""
    node, data_dir = web_node
    png = images.noisy_photo(900, 600).pngsave_buffer()
    png_path = tmp_path / "beach.png"
    png_path.write_bytes(png)
    peer = PythonPeer(node, png, chain, oidc_provider)
    try:
        result = await drive(node, peer, png_path)
    finally:
        await peer.close()

    assert "envelope vectors reproduced byte for byte in Chromium" in result["steps"]
    assert "access tokens refreshed silently with refresh-token rotation" in result["steps"]
    refreshes = [
        r for r in node.records if str(r.get("message")).startswith("POST /v1/auth/refresh")
    ]
    assert refreshes and all(r.get("status") == 200 for r in refreshes), refreshes[-3:]
    assert len(result["steps"]) >= 14, result["steps"]
    assert "both saw the tip's progress (tip:updated): mined, 1/2 confirmations" in result["steps"]
    tip_steps = [s for s in result["steps"] if s.startswith("confirmed after the second block")]
    assert tip_steps, result["steps"]
    assert any("recipient_no_wallet" in s for s in result["steps"]), result["steps"]
    # The browser handed the node the wallet's hash once, and it was taken.
    submits = [
        r
        for r in node.records
        if str(r.get("message")).startswith("POST /v1/tips/")
        and str(r.get("message")).split()[1].endswith("/submit")
    ]
    assert [r.get("status") for r in submits] == [200], submits
    # Dana's password sign-ins: unconfirmed address, wrong password, then in.
    logins = [
        r.get("status")
        for r in node.records
        if str(r.get("message")).startswith("POST /v1/auth/email/login")
    ]
    assert logins == [403, 401, 200], logins
    assert any("invalid_credentials" in s for s in result["steps"]), result["steps"]
    # Erin's two provider sign-ins spent one code each; the planted code never left the
    # browser. Alice's first link met identity_taken (Erin's), the second linked.
    assert statuses(node, "POST /v1/auth/oidc/exchange") == [200, 200]
    assert statuses(node, "POST /v1/me/identities/oidc/finish") == [409, 200]
    assert any("oidc_access_denied" in s for s in result["steps"]), result["steps"]
    for name in (
        "01-sign-in",
        "04-chat-desktop",
        "05-chat-mobile",
        "06-lightbox-mobile",
        "09-tip-dialog",
        "10-tip-confirmed-mobile",
        "11-register",
        "14-interests-welcome",
        "15-profile-card",
        "16-oidc-sign-in",
        "17-oidc-denied",
        "18-linked-sign-ins",
    ):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 1000, name

    stored = stored_bytes(data_dir)
    # The search reads the right files: what is stored in the clear is found.
    for name in result["names"]:
        assert name.encode() in stored, f"{name} (a profile nickname) should be stored"
    leaked = [m for m in result["markers"] if m.encode() in stored]
    assert len(result["markers"]) >= 8 and not leaked, f"plaintext in the node's data: {leaked}"
    # Nor does the image reach the server readable: no run of its bytes is stored.
    for start in range(0, len(png) - 64, len(png) // 16):
        assert png[start : start + 64] not in stored, f"image bytes at {start} stored in the clear"


async def test_server_serves_the_client_and_keeps_api_paths(
    web_node: tuple[ServerProcess, Path],
) -> None:
    """/ and client routes get index.html with a CSP; API paths keep JSON 404s and 405s."""
    require_build()
    node, _ = web_node
    async with httpx.AsyncClient(base_url=node.url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-cache"
        deep = await http.get("/chats/some-client-route")
        assert deep.status_code == 200 and deep.content == page.content

        asset = next(p for p in (WEB_DIST / "assets").iterdir() if p.suffix == ".js")
        script = await http.get(f"/assets/{asset.name}")
        assert script.status_code == 200 and script.content == asset.read_bytes()
        assert "immutable" in script.headers["cache-control"]
        assert script.headers["content-type"].startswith("text/javascript")

        for path in ("/assets/gone-1234.js", "/v1/no-such-route", "/socket.io-nope"):
            missing = await http.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["code"] == "not_found", path
        wrong_method = await http.get("/v1/auth/phone/start")
        assert wrong_method.status_code == 405
        assert (await http.post("/")).status_code in (404, 405)
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/openapi.json")).json()["info"]["title"] == "Parley"


def test_api_only_without_a_build(tmp_path: Path) -> None:
    """Without a built client the node logs how to build it and serves the API alone."""
    node = ServerProcess(
        {
            **BASE_ENV,
            "PARLEY_DATABASE_URL": f"sqlite://{tmp_path}/parley.sqlite3",
            "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys"),
            "PARLEY_MEDIA_DIR": str(tmp_path / "media"),
            "PARLEY_SERVER_WEB_DIR": str(tmp_path / "no-build"),
        },
        name="api-only-node",
    ).start()
    try:
        record = node.wait_for_record(lambda r: "web client not built" in str(r.get("message")))
        assert "make web" in record["message"]
        root = httpx.get(f"{node.url}/")
        assert root.status_code == 404 and root.json()["error"]["code"] == "not_found"
        assert httpx.get(f"{node.url}/healthz").status_code == 200
    finally:
        node.stop()

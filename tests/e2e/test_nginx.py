"""Two nodes behind a real load balancer (nginx, and HAProxy): cross-node chat through it.

The balancer runs with the shipped configuration (config/deploy/nginx.conf,
haproxy.cfg), only its addresses and file locations rewritten
(scripts/balancer.py): TLS with a self-signed certificate made here, and the
plain-HTTP port that only redirects and answers ACME challenges. It hashes the
client address, so each test client binds its own loopback source address
(127.0.0.x) to land on the node the test wants. nginx and HAProxy come from
Debian packages (`make test` installs them); a missing one FAILS these tests,
never skips them.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from client import ParleyClient
from scripts.balancer import KINDS, Balancer, BalancerError, BalancerTls, Kind
from tests.support.phones import fresh_phone
from tests.support.server import ServerProcess
from tests.support.tls import write_self_signed

# How each transport is asked for: websocket only, long-polling only, and the
# browser default (long-polling first, then an upgrade on the same session).
TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "polling+upgrade": ["polling", "websocket"],
}


def start_balancer(
    kind: Kind, nodes: Sequence[ServerProcess], tls: BalancerTls | None = None
) -> Balancer:
    """A running nginx or HAProxy in front of ``nodes``; fails the test if it cannot run."""
    try:
        return Balancer(kind, [f"127.0.0.1:{n.port}" for n in nodes], tls=tls).start()
    except BalancerError as exc:
        pytest.fail(str(exc), pytrace=False)


def write_self_signed_certificate(directory: Path) -> BalancerTls:
    """A fresh key and a self-signed certificate for 127.0.0.1 and localhost."""
    files = write_self_signed(directory, "parley-e2e")
    return BalancerTls(certificate=files.certificate, private_key=files.private_key)


def client_ssl_context(lb: Balancer) -> ssl.SSLContext | None:
    """A context that trusts the balancer's certificate (and only it); None without TLS."""
    if lb.tls is None:
        return None
    return ssl.create_default_context(cafile=lb.tls.certificate)


def key_authorization(token: str) -> str:
    """What an ACME client answers for ``token`` (RFC 8555, 8.3: token.thumbprint)."""
    return f"{token}.e2e-account-thumbprint"


class _AcmeResponder(BaseHTTPRequestHandler):
    """An ACME client's http-01 responder (certbot --standalone), as HAProxy reaches it."""

    def do_GET(self) -> None:
        body = key_authorization(self.path.rsplit("/", 1)[-1]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the default writes every request to stderr."""


def metric(node: ServerProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples on ``node`` whose labels include ``labels``."""
    text = httpx.get(f"{node.url}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


_STATUS = {
    "nginx": re.compile(r'^\S+ - \[[^]]+\] "[^"]*" (\d{3}) ', re.MULTILINE),
    "haproxy": re.compile(r" \d+/\d+/-?\d+/-?\d+/\d+ (\d{3}) ", re.MULTILINE),
}


# The node each logged request went to: nginx's $upstream_addr, HAProxy's server name.
_UPSTREAM = {
    "nginx": re.compile(r'^\S+ - \[[^]]+\] "[^"]*[?&]sid=([\w-]+)[^"]*" .* upstream=(\S+)', re.M),
    "haproxy": re.compile(r' parley/(\S+) .*"[^"]*[?&]sid=([\w-]+)[^"]*"$', re.M),
}


def nodes_by_session(lb: Balancer) -> dict[str, set[str]]:
    """Every Engine.IO session id in the balancer's log, with the nodes its requests reached."""
    seen: dict[str, set[str]] = {}
    for match in _UPSTREAM[lb.kind].finditer(lb.access_log()):
        sid, node = match.groups() if lb.kind == "nginx" else reversed(match.groups())
        seen.setdefault(sid, set()).add(node)
    return seen


def logged_statuses(lb: Balancer) -> list[int]:
    """The HTTP status of every request the balancer logged."""
    return [int(m) for m in _STATUS[lb.kind].findall(lb.access_log())]


def _healthz_count(node: ServerProcess) -> float:
    return metric(node, "parley_http_requests_total", route="/healthz")


async def addresses_by_node(
    lb: Balancer, nodes: Sequence[ServerProcess], wanted: int = 2
) -> dict[str, list[str]]:
    """``wanted`` loopback source addresses per node that the balancer sends there.

    Found by asking: a /healthz from each candidate address through the
    balancer, and which node counted it.
    """
    found: dict[str, list[str]] = {n.name: [] for n in nodes}
    for last in range(2, 120):
        if all(len(ips) >= wanted for ips in found.values()):
            return found
        ip = f"127.0.0.{last}"
        before = await asyncio.to_thread(lambda: [_healthz_count(n) for n in nodes])
        verify = client_ssl_context(lb) or True
        transport = httpx.AsyncHTTPTransport(local_address=ip, verify=verify)
        async with httpx.AsyncClient(transport=transport, base_url=lb.url) as http:
            assert (await http.get("/healthz")).status_code == 200
        after = await asyncio.to_thread(lambda: [_healthz_count(n) for n in nodes])
        (hit,) = [n for n, b, a in zip(nodes, before, after, strict=True) if a > b]
        found[hit.name].append(ip)
    pytest.fail(f"{lb.kind} sent 118 addresses to too few nodes: {found}")


async def balanced_client(
    lb: Balancer,
    node: ServerProcess,
    ip: str,
    nickname: str,
    transports: list[str],
) -> ParleyClient:
    """A client that signs in and connects through the balancer from ``ip`` (which lands on
    ``node``, whose log has the sign-in code), with a device for E2EE."""
    client = ParleyClient(
        lb.url,
        device_name=f"lb-{nickname}",
        transports=transports,
        local_address=ip,
        ssl_context=client_ssl_context(lb),
    )
    start = await client.start_phone_sign_in(fresh_phone())
    code = await asyncio.to_thread(node.next_sms_code, start["phone"])
    await client.verify_phone(start["request_id"], code, nickname=nickname)
    await client.setup_device(f"lb-{nickname}")
    await client.connect()
    return client


async def next_message(client: ParleyClient, message_id: str) -> dict[str, Any]:
    """The message ``message_id`` as it arrives; before it only system notices and the
    client's own messages (their echo) may come."""
    while (message := await client.next_message(timeout=10))["id"] != message_id:
        assert message["kind"] == "system" or message["sender_id"] == client.user_id, message
    return message


@pytest.fixture(scope="module")
def acme_responder() -> Iterator[str]:
    """``host:port`` of a stand-in ACME http-01 responder."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AcmeResponder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module", params=KINDS)
def balancer(
    request: pytest.FixtureRequest,
    cluster: tuple[ServerProcess, ServerProcess],
    tmp_path_factory: pytest.TempPathFactory,
    acme_responder: str,
) -> Iterator[Balancer]:
    """nginx, then HAProxy, in front of the two shared nodes, with TLS as shipped."""
    tls = write_self_signed_certificate(tmp_path_factory.mktemp("tls"))
    tls = BalancerTls(tls.certificate, tls.private_key, acme_server=acme_responder)
    lb = start_balancer(request.param, cluster, tls=tls)
    yield lb
    lb.remove()


@pytest.fixture(scope="module")
async def routes(
    balancer: Balancer, cluster: tuple[ServerProcess, ServerProcess]
) -> AsyncIterator[dict[str, list[str]]]:
    """Source addresses per node name, as this balancer hashes them."""
    yield await addresses_by_node(balancer, cluster, wanted=len(TRANSPORTS))


async def test_https_answers_carry_hsts_and_parley_sees_https(balancer: Balancer) -> None:
    """Over https the balancer adds HSTS and tells Parley the scheme (its redirects stay https)."""
    context = client_ssl_context(balancer)
    assert context is not None and balancer.url.startswith("https://")
    headers = {"Host": "chat.example.com"}  # as a browser on port 443 sends it
    async with httpx.AsyncClient(base_url=balancer.url, verify=context, headers=headers) as http:
        health = await http.get("/healthz")
        # Starlette's trailing-slash redirect builds its URL from the scheme
        # uvicorn took from X-Forwarded-Proto.
        redirect = await http.get("/healthz/")
    assert health.status_code == 200
    assert health.headers["strict-transport-security"] == "max-age=63072000"
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "https://chat.example.com/healthz"


async def test_a_non_default_port_survives_the_balancer(balancer: Balancer) -> None:
    """Parley sees the Host a client sent, port included: URLs it builds (a redirect here,
    the same-origin check of sockets) point at the balancer's real address."""
    assert urlsplit(balancer.url).port not in (None, 443)
    async with httpx.AsyncClient(
        base_url=balancer.url, verify=client_ssl_context(balancer)
    ) as http:
        redirect = await http.get("/healthz/")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == f"{balancer.url}/healthz"


async def test_plain_http_is_redirected_to_https_before_parley(
    balancer: Balancer, cluster: tuple[ServerProcess, ServerProcess]
) -> None:
    """Port 80 answers every request, a password sign-in too, with 308 to the same https URL."""
    login = "/v1/auth/email/login"
    before = [metric(n, "parley_http_requests_total", route=login) for n in cluster]
    headers = {"Host": "chat.example.com"}
    async with httpx.AsyncClient(base_url=balancer.http_url, headers=headers) as http:
        get = await http.get("/v1/users/me?fields=all")
        post = await http.post(login, json={"identifier": "ana@example.com", "password": "x" * 12})
    assert (get.status_code, post.status_code) == (308, 308)
    assert get.headers["location"] == "https://chat.example.com/v1/users/me?fields=all"
    assert post.headers["location"] == f"https://chat.example.com{login}"
    after = [metric(n, "parley_http_requests_total", route=login) for n in cluster]
    assert after == before, "the password reached a node over plain HTTP"


async def test_acme_challenge_is_answered_over_plain_http(balancer: Balancer) -> None:
    """Port 80 serves ACME http-01 challenges (nginx from its webroot, HAProxy via the client)."""
    token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"  # RFC 8555, 8.3
    if balancer.kind == "nginx":
        challenge = balancer.acme_webroot / ".well-known" / "acme-challenge" / token
        challenge.write_text(key_authorization(token))
    async with httpx.AsyncClient(base_url=balancer.http_url) as http:
        answer = await http.get(f"/.well-known/acme-challenge/{token}")
    assert answer.status_code == 200
    assert answer.text == key_authorization(token)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_encrypted_chat_crosses_nodes_through_the_balancer(
    balancer: Balancer,
    routes: dict[str, list[str]],
    cluster: tuple[ServerProcess, ServerProcess],
    transport: str,
) -> None:
    """Through the balancer over https/wss, a user on node 1 and one on node 2 exchange E2EE
    messages."""
    node1, node2 = cluster
    index = list(TRANSPORTS).index(transport)
    sockets_before = [metric(n, "parley_sockets_connected") for n in cluster]
    ana = await balanced_client(
        balancer, node1, routes[node1.name][index], "ana", TRANSPORTS[transport]
    )
    ben = await balanced_client(
        balancer, node2, routes[node2.name][index], "ben", TRANSPORTS[transport]
    )
    try:
        sockets_after = [metric(n, "parley_sockets_connected") for n in cluster]
        assert [a - b for a, b in zip(sockets_after, sockets_before, strict=True)] == [1, 1], (
            "one socket on each node"
        )
        if transport == "polling+upgrade":
            await asyncio.sleep(0.5)  # the upgrade happens after the connect
        expected = "websocket" if transport != "polling" else "polling"
        for client in (ana, ben):
            assert client.sio.eio.current_transport == expected

        conversation = await ana.open_direct(ben.user_id or "", mode="encrypted")
        texts: list[str] = []
        for i in range(3):
            ack = await ana.send_encrypted(conversation["id"], {"text": f"ana {i}"})
            texts.append((await ben.open_message(await next_message(ben, ack["id"])))["text"])
            reply = await ben.send_encrypted(conversation["id"], {"text": f"ben {i}"})
            texts.append((await ana.open_message(await next_message(ana, reply["id"])))["text"])
        assert texts == ["ana 0", "ben 0", "ana 1", "ben 1", "ana 2", "ben 2"]
        assert ana.connected and ben.connected
    finally:
        await ana.close()
        await ben.close()
    # Stickiness: every request of a session reached the node that holds it. (A
    # status check would not do: a long-poll that crosses the client's close
    # is answered 400, unknown session, by the right node.)
    sessions = nodes_by_session(balancer)
    if transport != "websocket":  # a websocket-only session makes one logged request
        assert len(sessions) >= 2, balancer.access_log()[-3000:]
    assert all(len(nodes) == 1 for nodes in sessions.values()), sessions
    assert 500 not in logged_statuses(balancer)

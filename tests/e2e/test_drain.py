"""Graceful drain, and kill -9, of a node behind a real nginx, while users chat.

ARCHITECTURE.md section 10: on SIGTERM a node turns unready, refuses new
sockets (nginx retries them on the other node), lets in-flight acks go out,
drops its sockets (clients reconnect through nginx, to the other node) and
exits. A node killed outright loses its sockets at once; clients reconnect the
same way. Either way no acked message is lost: it is in the database before
the ack, and the SDK syncs after a reconnect. These are the fast versions of
the drills in bench/drills (a few users, a few seconds); they run nodes of
their own, never the shared ``cluster``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import socketio

from bench.drills.backends import PrivatePostgres
from client import ParleyApiError, ParleyClient
from scripts.balancer import Balancer
from scripts.cluster import create_database_if_missing
from tests.e2e.test_failover import check_acks_and_history, full_history, node_env, start_pair
from tests.e2e.test_nginx import (
    addresses_by_node,
    balanced_client,
    logged_statuses,
    metric,
    start_balancer,
)
from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess
from tests.support.services import (
    REDIS_E2E_DB,
    create_postgres_database,
    drop_postgres_database,
    redis_url,
)

# Within the bound: every client is connected again within 10 s.
RECONNECT_BOUND = 10.0
SEND_TIMEOUT = 2.0
# What a send may meet while its node goes away: no socket, an ack that never
# comes (the frame was lost with the connection), or the drain's refusal.
RETRYABLE = (socketio.exceptions.BadNamespaceError, socketio.exceptions.TimeoutError)


@dataclass
class User:
    """One user's device through the balancer: what it sent, what was acked, what arrived."""

    name: str
    client: ParleyClient
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    acks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    # (monotonic time, connected?) at every change the watcher saw.
    transitions: list[tuple[float, bool]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks += [asyncio.create_task(self._read()), asyncio.create_task(self._watch())]

    async def _read(self) -> None:
        while True:
            message = await self.client.messages.get()
            self.received.setdefault(message["id"], message)

    async def _watch(self) -> None:
        state = self.client.connected
        while True:
            await asyncio.sleep(0.01)
            if self.client.connected != state:
                state = self.client.connected
                self.transitions.append((time.monotonic(), state))

    def reconnected_after(self, since: float) -> float | None:
        """Seconds from ``since`` until connected again, if it was disconnected after it."""
        down = [t for t, up in self.transitions if not up and t >= since]
        if not down:
            return None
        up = [t for t, connected in self.transitions if connected and t > down[0]]
        return round(up[-1] - since, 2) if up and self.client.connected else float("inf")

    async def send(self, conversation_id: str, text: str) -> None:
        """Send until acked, resending with the same client_msg_id after a reconnect."""
        client_msg_id = f"{self.name}-{uuid.uuid4().hex}"
        deadline = time.monotonic() + 3 * RECONNECT_BOUND
        while True:
            try:
                ack = await self.client.send_text(
                    conversation_id, text, client_msg_id=client_msg_id, timeout=SEND_TIMEOUT
                )
                self.acks.setdefault(client_msg_id, []).append(ack)
                return
            except RETRYABLE as exc:
                self.failures[type(exc).__name__] += 1
            except ParleyApiError as exc:
                if exc.code != "unavailable":
                    raise
                self.failures[exc.code] += 1
            assert time.monotonic() < deadline, f"{self.name}: no ack for {client_msg_id}"
            await asyncio.sleep(0.05)
            with contextlib.suppress(TimeoutError):
                await self.client.wait_connected(timeout=1)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own, dropped at the end."""
    url = await create_postgres_database("parley_drain")
    yield url
    await drop_postgres_database(url)


@pytest.fixture
def nodes() -> Iterator[list[ServerProcess]]:
    """Nodes a test starts (appends here); every one is stopped at the end."""
    started: list[ServerProcess] = []
    yield started
    for node in started:
        node.stop()


# A polling client whose node goes away mid-request leaves aiohttp's connection
# to the garbage collector (inside python-engineio); collect it here, where
# that is expected, rather than let it surface in whichever test runs next.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore:Unclosed connection:ResourceWarning")
@pytest.mark.parametrize("action", ["drain", "kill"])
async def test_node_leaves_and_its_clients_move_through_nginx(
    action: Literal["drain", "kill"],
    database: str,
    nodes: list[ServerProcess],
    tmp_path: Path,
) -> None:
    """Node 1 drains (SIGTERM) or dies (SIGKILL) mid-chat: its clients are back within 10 s on
    node 2 through nginx, and every acked message reaches every user."""
    env = node_env(database, redis_url(REDIS_E2E_DB), tmp_path / "keys")
    node1, node2 = await start_pair(env, nodes, action)
    # Started from the main thread, so that it dies with this process if need be.
    lb: Balancer = start_balancer("nginx", [node1, node2])
    users: list[User] = []
    try:
        routes = await addresses_by_node(lb, [node1, node2], wanted=2)
        # On the node that leaves: one websocket and one long-polling client.
        spec = [
            ("ana", node1, routes[node1.name][0], ["websocket"]),
            ("ben", node1, routes[node1.name][1], ["polling"]),
            ("cid", node2, routes[node2.name][0], ["websocket"]),
            ("dee", node2, routes[node2.name][1], ["polling"]),
        ]
        clients = await asyncio.gather(
            *(balanced_client(lb, node, ip, name, t) for name, node, ip, t in spec)
        )
        users = [User(name, c) for (name, *_), c in zip(spec, clients, strict=True)]
        for user in users:
            user.start()
        assert metric(node1, "parley_sockets_connected") == 2
        assert metric(node2, "parley_sockets_connected") == 2
        group = await users[0].client.create_group(
            f"{action} drill", [u.client.user_id or "" for u in users[1:]], mode="plaintext"
        )
        cid = group["id"]

        per_user, act_after = 30, 40
        acted = asyncio.Event()
        acted_at: list[float] = []

        async def chatter(user: User) -> None:
            for i in range(per_user):
                await user.send(cid, f"{user.name} says {i}")
                if not acted.is_set() and sum(len(u.acks) for u in users) >= act_after:
                    acted.set()
                await asyncio.sleep(0.03)

        async def act() -> None:
            await acted.wait()
            acted_at.append(time.monotonic())
            assert node1.proc is not None
            if action == "drain":
                node1.proc.terminate()
            else:
                node1.proc.kill()

        async with asyncio.timeout(60), asyncio.TaskGroup() as tasks:
            tasks.create_task(act())
            for user in users:
                tasks.create_task(chatter(user))
        (acted_time,) = acted_at

        assert node1.proc is not None
        exit_code = await asyncio.to_thread(node1.proc.wait, 20)
        # Every client is connected (on node 2, the only one left) within the bound.
        while not all(u.client.connected for u in users):
            assert time.monotonic() < acted_time + RECONNECT_BOUND + 5, "clients not back"
            await asyncio.sleep(0.05)
        moved = {u.name: u.reconnected_after(acted_time) for u in users}
        await asyncio.sleep(1)  # the last live deliveries and the SDK's catch-up syncs
        history = await full_history(users[-1].client, cid)
        expected = check_acks_and_history(users, history)  # type: ignore[arg-type]
        for user in users:  # what live fan-out and the SDK's own sync left out, if anything
            for message in await user.client.sync({cid: 0}):
                user.received.setdefault(message["id"], message)
        statuses = Counter(logged_statuses(lb))
        print(  # shown with -s, and with a failure
            f"{action}: node 1 exit {exit_code}; reconnected after {moved}; failed sends "
            f"{ {u.name: dict(u.failures) for u in users} }; nginx statuses {dict(statuses)}"
        )

        assert len([m for m in history if m["kind"] == "text"]) == 4 * per_user
        for user in users:
            missing = expected - set(user.received)
            assert not missing, f"{user.name} never got acked messages {sorted(missing)}"
        for name in ("ana", "ben"):
            delay = moved[name]
            assert delay is not None and delay <= RECONNECT_BOUND, f"{name}: {moved}"
        for name in ("cid", "dee"):
            assert moved[name] is None, f"{name} on the surviving node was disconnected"
        assert metric(node2, "parley_sockets_connected") == 4
        if action == "drain":
            # uvicorn ends a clean shutdown by re-raising the signal it got.
            assert exit_code in (0, -signal.SIGTERM), node1.log_text()[-3000:]
            node1.wait_for_record(lambda r: r.get("message") == "drained: every socket moved")
            node1.wait_for_record(lambda r: r.get("message") == "Application shutdown complete.")
            # nginx retried every refused handshake on node 2: no client saw a 503.
            assert 503 not in statuses, statuses
    finally:
        for user in users:
            await user.close()
        lb.remove()
        users.clear()
        clients = []
        gc.collect()


async def test_a_handshake_cut_short_is_a_failed_attempt_not_a_crash() -> None:
    """A long-polling handshake whose body is cut short (its node died behind the balancer)
    fails like any refused attempt, so the SDK's reconnect loop goes on trying."""

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n0{"sid":')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut_short, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ParleyClient(f"http://127.0.0.1:{port}", transports=["polling"])
    client.access_token, client.access_expires_at = "token", time.time() + 3600
    try:
        # python-socketio's reconnect loop survives only ConnectionError (and ValueError).
        with pytest.raises(ParleyApiError) as failed:
            await client.connect(timeout=5)
        assert failed.value.code == "connect_failed", failed.value
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_database_restart_answers_unavailable_then_recovers(tmp_path: Path) -> None:
    """While PostgreSQL is down, sends and HTTP calls get 503 ``unavailable`` (never
    ``internal_error``); once it is back, the same node serves again."""
    postgres = PrivatePostgres()  # this test's own server: stopping it disturbs nobody
    node: ServerProcess | None = None
    client: ParleyClient | None = None
    try:
        await asyncio.to_thread(postgres.start)
        await create_database_if_missing(postgres.url)
        env = node_env(postgres.url, redis_url(REDIS_E2E_DB), tmp_path / "keys")
        node = ServerProcess({**env, "PARLEY_DATABASE_AUTO_MIGRATE": "true"}, name="pg-drill")
        await asyncio.to_thread(node.start)
        client = await signed_in_client(node, "pat")
        group = await client.create_group("alone", [], mode="plaintext")
        await client.send_text(group["id"], "before")

        await asyncio.to_thread(postgres.halt)
        with pytest.raises(ParleyApiError) as refused:
            await client.send_text(group["id"], "while down", timeout=SEND_TIMEOUT * 5)
        assert refused.value.code == "unavailable", refused.value
        with pytest.raises(ParleyApiError) as http:
            await client.history(group["id"])
        assert (http.value.status, http.value.code) == (503, "unavailable"), http.value

        await asyncio.to_thread(postgres.start)
        deadline = time.monotonic() + RECONNECT_BOUND
        while True:  # pooled connections that died with the server are replaced
            try:
                ack = await client.send_text(group["id"], "after", timeout=SEND_TIMEOUT)
                break
            except ParleyApiError as exc:
                assert exc.code == "unavailable" and time.monotonic() < deadline, exc
                await asyncio.sleep(0.2)
        stored = (await client.history(group["id"]))["messages"]
        assert [m["body"]["text"] for m in stored if m["kind"] == "text"] == ["before", "after"]
        assert ack["seq"] == stored[-1]["seq"]
        assert "internal_error" not in node.log_text()
    finally:
        if client is not None:
            await client.close()
        if node is not None:
            node.stop()
        await asyncio.to_thread(postgres.stop)

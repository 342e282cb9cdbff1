"""Failure drills: a node killed mid-conversation, and Redis restarted mid-run.

ARCHITECTURE.md section 10: no acked message is ever lost, because it is in the
database before the ack, and sync fills whatever best-effort fan-out missed.
These tests run nodes of their own (never the shared ``cluster``), so they can
kill them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
import socketio

from client import ParleyApiError, ParleyClient
from tests.e2e.conftest import BASE_ENV
from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess, free_port
from tests.support.services import (
    REDIS_E2E_DB,
    create_postgres_database,
    drop_postgres_database,
    redis_url,
)

# An ack slower than this counts as lost (the node died under it).
SEND_TIMEOUT = 2.0
# What a client sees when its node is gone: an ack that never comes, or no socket.
NODE_GONE = (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError)


# -- helpers ------------------------------------------------------------------


@dataclass
class Participant:
    """One user's device as the app sees it: what it sent, what was acked, what arrived."""

    name: str
    client: ParleyClient
    node: ServerProcess
    # Every message delivered to the app (live or by sync), by id.
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    # client_msg_id -> every ack the server gave for it (one per (re)send).
    acks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Sent but not acked yet, in order: (client_msg_id, text).
    pending: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # Set while a send waits for its ack.
    in_flight: asyncio.Event = field(default_factory=asyncio.Event)
    moved_at: float | None = None
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    def start_reading(self) -> None:
        self._readers.append(asyncio.create_task(self._read(self.client)))

    async def _read(self, client: ParleyClient) -> None:
        while True:
            self.record(await client.messages.get())

    def record(self, message: dict[str, Any]) -> None:
        self.received.setdefault(message["id"], message)

    def position(self, conversation_id: str) -> int:
        """The last seq held with nothing missing below it: sync from there fills every gap.

        (The highest seq seen would not do: a message that arrives after a gap
        would hide the gap from the next sync.)
        """
        seqs = {m["seq"] for m in self.received.values() if m["conversation_id"] == conversation_id}
        n = 0
        while n + 1 in seqs:
            n += 1
        return n

    async def send(self, conversation_id: str, client_msg_id: str, text: str) -> dict[str, Any]:
        self.in_flight.set()
        try:
            ack = await self.client.send_text(
                conversation_id, text, client_msg_id=client_msg_id, timeout=SEND_TIMEOUT
            )
        finally:
            self.in_flight.clear()
        self.acks.setdefault(client_msg_id, []).append(ack)
        return ack

    async def flush(
        self, conversation_id: str, balancer: Callable[[], ServerProcess] | None = None
    ) -> None:
        """Send everything not acked yet; when the node is gone, move (``balancer`` says
        where) and resend the rest with the same client_msg_ids."""
        while self.pending:
            client_msg_id, text = self.pending[0]
            try:
                await self.send(conversation_id, client_msg_id, text)
            except NODE_GONE as exc:
                self.failures.append(f"{type(exc).__name__} on {self.node.name}")
                if balancer is None:
                    raise
                await self.move_to(balancer())
                continue
            self.pending.pop(0)

    async def move_to(self, node: ServerProcess) -> None:
        """What a load balancer does for a client whose node died: a new socket elsewhere."""
        old = self.client
        await old.close()
        new = ParleyClient(node.url, device_name=old.device_name, transports=old.transports)
        # The same signed-in session (every node verifies every node's tokens).
        new.access_token, new.refresh_token = old.access_token, old.refresh_token
        new.access_expires_at, new.user_id = old.access_expires_at, old.user_id
        new.session_id = old.session_id
        self.client, self.node = new, node
        await new.connect()
        self.moved_at = time.monotonic()
        self.start_reading()

    async def catch_up(self, conversation_id: str) -> int:
        """Sync from the gap-free position; returns how many messages were new."""
        before = len(self.received)
        for message in await self.client.sync({conversation_id: self.position(conversation_id)}):
            self.record(message)
        return len(self.received) - before

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()


async def full_history(client: ParleyClient, conversation_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        page = await client.history(conversation_id, after_seq=len(messages), limit=100)
        messages.extend(page["messages"])
        if not page["has_more"]:
            return messages


def check_acks_and_history(
    participants: list[Participant], history: list[dict[str, Any]]
) -> set[str]:
    """Acks agree with each other and with the stored history; returns the ids to expect."""
    seqs = [m["seq"] for m in history]
    assert seqs == list(range(1, len(history) + 1)), f"seqs not gap-free 1..N: {seqs}"
    seq_of: dict[str, set[int]] = {}
    for p in participants:
        for client_msg_id, acks in p.acks.items():
            ids = {a["id"] for a in acks}
            assert len(ids) == 1, f"{p.name}: {client_msg_id} acked as several messages: {ids}"
            for ack in acks:
                seq_of.setdefault(ack["id"], set()).add(ack["seq"])
    twice = {mid: s for mid, s in seq_of.items() if len(s) > 1}
    assert not twice, f"message ids acked with different seqs: {twice}"
    stored = {m["id"]: m["seq"] for m in history}
    lost = sorted(set(seq_of) - set(stored))
    assert not lost, f"acked messages missing from the history: {lost}"
    assert all(stored[mid] in s for mid, s in seq_of.items()), "an ack's seq differs from storage"
    system = {m["id"] for m in history if m["kind"] == "system"}
    unacked = set(stored) - set(seq_of) - system
    assert not unacked, f"stored messages nobody got an ack for: {sorted(unacked)}"
    return set(seq_of) | system


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own, dropped at the end."""
    url = await create_postgres_database("parley_failover")
    yield url
    await drop_postgres_database(url)


@pytest.fixture
def nodes() -> Iterator[list[ServerProcess]]:
    """Nodes a test starts (appends here); every one is stopped at the end."""
    started: list[ServerProcess] = []
    yield started
    for node in started:
        node.stop()


def node_env(database: str, redis: str, keys: Path) -> dict[str, str]:
    run = uuid.uuid4().hex
    return {
        **BASE_ENV,
        "PARLEY_DATABASE_URL": database,
        "PARLEY_REDIS_URL": redis,
        "PARLEY_REDIS_CHANNEL": f"parley-failover-{run}",
        "PARLEY_REDIS_KEY_PREFIX": f"parley-failover-{run}:",
        "PARLEY_AUTH_KEYS_DIR": str(keys),
        "PARLEY_REALTIME_PRESENCE_HEARTBEAT": "0.5",
    }


async def start_pair(
    env: dict[str, str], nodes: list[ServerProcess], prefix: str
) -> tuple[ServerProcess, ServerProcess]:
    first = ServerProcess({**env, "PARLEY_DATABASE_AUTO_MIGRATE": "true"}, name=f"{prefix}-1")
    nodes.append(first)
    await asyncio.to_thread(first.start)
    second = ServerProcess(env, name=f"{prefix}-2")  # the first one migrated the database
    nodes.append(second)
    await asyncio.to_thread(second.start)
    return first, second


async def sign_in(spec: list[tuple[str, ServerProcess]]) -> list[Participant]:
    clients = await asyncio.gather(*(signed_in_client(node, name) for name, node in spec))
    participants = [
        Participant(name, client, node) for (name, node), client in zip(spec, clients, strict=True)
    ]
    for p in participants:
        p.start_reading()
    return participants


def log_tail(node: ServerProcess, lines: int = 30) -> str:
    return f"--- {node.name} log ---\n" + "\n".join(node.log_text().splitlines()[-lines:])


# -- 1. a node killed while messages flow --------------------------------------


async def test_kill_9_of_a_node_loses_no_acked_message(
    database: str, nodes: list[ServerProcess], tmp_path: Path
) -> None:
    """A node SIGKILLed mid-conversation: its clients move, resend, and nobody misses a message."""
    env = node_env(database, redis_url(REDIS_E2E_DB), tmp_path / "keys")
    node1, node2 = await start_pair(env, nodes, "failover")
    people = await sign_in([("ana", node1), ("ben", node1), ("cid", node2), ("dee", node2)])
    try:
        owner = people[0].client
        group = await owner.create_group(
            "drill", [p.client.user_id or "" for p in people[1:]], mode="plaintext"
        )
        cid = group["id"]
        per_user, kill_after = 25, 40
        halfway = asyncio.Event()
        killed_at: list[float] = []

        async def chatter(p: Participant) -> None:
            for i in range(per_user):
                p.pending.append((f"{p.name}-{i}-{uuid.uuid4().hex[:8]}", f"{p.name} says {i}"))
                await p.flush(cid, balancer=lambda: node2)
                if sum(len(q.acks) for q in people) >= kill_after:
                    halfway.set()
                await asyncio.sleep(random.uniform(0.02, 0.06))

        async def killer() -> None:
            await halfway.wait()
            # Best with a send of node 1 in flight: its ack never comes, and the
            # resend must not store it twice (it may or may not have been committed).
            waits = [asyncio.create_task(p.in_flight.wait()) for p in people[:2]]
            await asyncio.wait(waits, timeout=1, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            killed_at.append(time.monotonic())
            await asyncio.to_thread(node1.kill)

        started = time.monotonic()
        async with asyncio.timeout(40), asyncio.TaskGroup() as tasks:
            tasks.create_task(killer())
            for p in people:
                tasks.create_task(chatter(p))
        sending = time.monotonic() - started
        (kill_time,) = killed_at

        for p in people:  # a client that went quiet before noticing the death moves now
            if p.node is node1:
                await p.move_to(node2)
        await asyncio.sleep(0.5)  # let the last live deliveries land
        live = {p.name: len(p.received) for p in people}
        synced = {p.name: await p.catch_up(cid) for p in people}

        history = await full_history(people[-1].client, cid)
        moved = {p.name: p.moved_at - kill_time for p in people if p.moved_at is not None}
        print(  # shown with -s, and with a failure
            f"sent for {sending:.1f}s; moved after {moved}; failed sends "
            f"{ {p.name: p.failures for p in people} }; received live {live}; "
            f"filled by sync {synced}; {len(history)} messages stored"
        )

        expected = check_acks_and_history(people, history)
        assert len([m for m in history if m["kind"] == "text"]) == 4 * per_user
        stored = {m["id"]: m["seq"] for m in history}
        for p in people:
            missing, extra = expected - set(p.received), set(p.received) - expected
            assert not missing and not extra, (
                f"{p.name}: missing {missing}, extra {extra}\n{log_tail(node2)}"
            )
            assert all(m["seq"] == stored[mid] for mid, m in p.received.items()), p.name

        assert set(moved) == {"ana", "ben"}, f"only node 1's clients move: {moved}"
        assert all(0 <= delay <= 10 for delay in moved.values()), f"reconnected after {moved}"
        for p in people[2:]:
            assert not p.failures, f"{p.name} on the surviving node had failed sends: {p.failures}"
            assert p.client.connected, f"{p.name} lost its socket on the surviving node"
    finally:
        for p in people:
            await p.close()
        keys = redis_asyncio.Redis.from_url(redis_url(REDIS_E2E_DB))
        try:
            async for key in keys.scan_iter(match=env["PARLEY_REDIS_KEY_PREFIX"] + "*"):
                await keys.delete(key)
        finally:
            await keys.aclose()


# -- 2. Redis restarted mid-run -----------------------------------------------


class RedisServer:
    """A redis-server of this test's own on a free loopback port (never the shared 6379)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        probe = redis_asyncio.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    await probe.ping()
                    return
                except (OSError, redis_asyncio.ConnectionError):
                    if time.monotonic() > deadline or self.proc.returncode is not None:
                        raise
                    await asyncio.sleep(0.05)
        finally:
            await probe.aclose()

    async def stop(self) -> None:
        """SIGTERM, as an orchestrator restarting it would."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)
        self.proc = None


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    """A redis-server the test may stop and start; stopped at the end."""
    server = RedisServer()
    yield server
    await server.stop()


# Answers that mean the server hung or crashed rather than refused cleanly.
HANG_OR_CRASH = {"no answer", "internal_error", "bad_ack"}


async def attempt(
    p: Participant, conversation_id: str, client_msg_id: str, text: str
) -> tuple[str, float]:
    """Send once; returns the outcome (``acked``, an error code, or ``no answer``) and the
    seconds it took. What was not acked is queued for a resend with the same id."""
    sent = time.monotonic()
    try:
        await p.send(conversation_id, client_msg_id, text)
        outcome = "acked"
    except ParleyApiError as exc:
        outcome = exc.code
    except socketio.exceptions.TimeoutError:
        outcome = "no answer"
    if outcome != "acked":
        p.pending.append((client_msg_id, text))
    return outcome, round(time.monotonic() - sent, 3)


async def readiness(node: ServerProcess, *, wait_until: float = 0.0) -> tuple[int, dict[str, Any]]:
    """``/readyz``'s status and body; retried while not 200 until ``wait_until`` (monotonic)."""
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        while True:
            response = await http.get("/readyz")
            if response.status_code == 200 or time.monotonic() >= wait_until:
                body: dict[str, Any] = response.json()
                return response.status_code, body
            await asyncio.sleep(0.1)


async def test_redis_restart_loses_no_acked_message(
    database: str, own_redis: RedisServer, nodes: list[ServerProcess], tmp_path: Path
) -> None:
    """Redis dies and comes back: sends answer cleanly, fan-out resumes, sync fills every gap."""
    await own_redis.start()
    env = node_env(database, own_redis.url, tmp_path / "keys")
    node1, node2 = await start_pair(env, nodes, "redis-drill")
    people = await sign_in([("ann", node1), ("bo", node2), ("cy", node2)])
    ann, bo, _ = people
    try:
        group = await ann.client.create_group(
            "redis drill", [p.client.user_id or "" for p in people[1:]], mode="plaintext"
        )
        cid = group["id"]

        def new_id(p: Participant) -> str:
            return f"{p.name}-{uuid.uuid4().hex}"

        before = await ann.send(cid, new_id(ann), "before the outage")
        deadline = time.monotonic() + 10
        while before["id"] not in bo.received:  # cross-node fan-out works to begin with
            assert time.monotonic() < deadline, "no cross-node delivery even before the outage"
            await asyncio.sleep(0.05)

        await own_redis.stop()
        # Sends keep coming while Redis is away. The message is durable in the database
        # before the ack, so chat goes on: every send is acked (the event limiter fails
        # open and token revocation falls back to the database).
        answers: list[tuple[str, str, float]] = []  # (sender, outcome, seconds)

        async def send_during_outage(p: Participant) -> None:
            end = time.monotonic() + 2
            while time.monotonic() < end:
                answers.append((p.name, *await attempt(p, cid, new_id(p), "while Redis is down")))
                await asyncio.sleep(0.2)

        await asyncio.gather(send_during_outage(ann), send_during_outage(bo))
        down = [await readiness(node) for node in (node1, node2)]
        # An HTTP sync needs only the database (the revocation check falls back to it).
        try:
            outage_sync: str = f"200, {len(await bo.client.sync({cid: 0}))} messages"
        except ParleyApiError as exc:
            outage_sync = f"{exc.status} {exc.code}"

        await own_redis.start()
        back_at = time.monotonic()
        # Cross-node fan-out resumes: a probe sent on node 1 reaches a socket on node 2.
        # Clients do not wait for /readyz; they send at once.
        probes: list[tuple[str, float]] = []
        probe_ids: list[str] = []
        resumed_after: float | None = None
        while resumed_after is None and time.monotonic() < back_at + 10:
            client_msg_id = new_id(ann)
            probes.append(await attempt(ann, cid, client_msg_id, "probe"))
            probe_ids += [ack["id"] for ack in ann.acks.get(client_msg_id, [])]
            for _ in range(10):
                if any(mid in bo.received for mid in probe_ids):
                    resumed_after = round(time.monotonic() - back_at, 2)
                    break
                await asyncio.sleep(0.05)
        up = [await readiness(node, wait_until=back_at + 10) for node in (node1, node2)]

        for p in (ann, bo):  # what failed during the outage goes again, same client_msg_id
            await p.flush(cid)
        await bo.send(cid, new_id(bo), "after the outage")
        synced = {p.name: await p.catch_up(cid) for p in people}
        history = await full_history(ann.client, cid)
        print(  # shown with -s, and with a failure
            f"answers while down {answers}; /readyz while down {down}; sync while down "
            f"{outage_sync}; probe answers after restart {probes}; cross-node fan-out back "
            f"after {resumed_after}s; /readyz after {[status for status, _ in up]}; "
            f"filled by sync {synced}"
        )

        logs = "\n".join(log_tail(node) for node in (node1, node2))
        bad = [a for a in answers + [("ann", *a) for a in probes] if a[1] in HANG_OR_CRASH]
        assert not bad, f"sends hung or failed badly around the outage: {bad}\n{logs}"
        for status, body in down:
            assert status == 503, body
            assert body["checks"]["kv"] != "ok" and body["checks"]["database"] == "ok", body
        assert outage_sync.startswith("200"), outage_sync
        assert {outcome for _, outcome, _ in answers} == {"acked"}, answers
        for status, body in up:
            assert status == 200, f"not ready 10 s after Redis came back: {body}"
        assert resumed_after is not None, f"no cross-node delivery 10 s after Redis is back\n{logs}"

        expected = check_acks_and_history(people, history)
        for p in people:
            missing = expected - set(p.received)
            assert not missing, f"{p.name} lacks acked messages after sync: {sorted(missing)}"
    finally:
        for p in people:
            await p.close()

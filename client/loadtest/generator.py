"""One load-generator process: a slice of the sessions, driven over a pipe.

The parent (:mod:`client.loadtest.pool`) starts several of these with
``multiprocessing`` (spawn) and sends one command at a time:

    {"cmd": "connect", "ramp": 100.0, "concurrency": 200}
        open every socket of the slice, ``ramp`` new connections per second
        (0: as fast as ``concurrency`` allows); reply with counts, connect times
        and errors
    {"cmd": "run", "run": 1, "rate": 50.0, "start_at": <time.time()>, "duration": 10,
     "drain": 5, "text_bytes": 64}
        from ``start_at`` send ``rate`` messages/s (round-robin over the slice's
        connected sessions, each to its own group) for ``duration`` s, keep
        receiving until ``drain`` s after the end (or until deliveries stop);
        reply with counts, latencies and the acked seqs per conversation
    {"cmd": "audit", "acked": {conversation_id: [seq, ...]}, "sync": true}
        for every session: which acked messages of its conversation it never
        received; with ``sync``, ask the server for them (as a reconnecting
        client does) first; reply with what is still missing
    {"cmd": "close"}
        close every socket, reply, exit

While ``spec["progress"]`` > 0, the process also sends ``{"progress": {...}}``
every that many seconds (connections, sent, delivered, errors, the latencies
since the last one) for the live progress line.

A message's ``client_msg_id`` is ``<run tag>.<send time, µs>.<pid>-<session>-<n>``
(with ``"sealed"`` in a run command, the time the message is due: its envelope
was made before the run):
every receiver takes receive time minus send time (one clock when the
generator and its processes run on one machine) and recognises the messages of
the current run. Sessions reconnect on their own when their connection drops
(exponential back-off from 0.1 s to 2 s, with jitter), send again what was not
acked (same ``client_msg_id``: the server answers a repeat with the first ack),
and sync what they missed, like any Parley client.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import random
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from client.loadtest.sockets import KINDS, ConnectRefusedError, SocketClient
from crypto.envelope import decrypt_envelope, encrypt_envelope

RECONNECT_FIRST = 0.1
RECONNECT_CAP = 2.0
# A receiver that sees seq N+2 before N+1 waits this long before asking for N+1
# (fan-outs of two sends can overtake each other).
GAP_WAIT = 3.0
# Frames longer than this (envelopes for large groups: 100 recipients make
# 17 KB) are not parsed whole unless they are decrypted: the seq and the
# client_msg_id are read where the server puts them, before the body.
PEEK_OVER = 2048
# Error acks that mean "not done, try again" rather than "refused".
RETRYABLE = frozenset({"unavailable"})


def raise_fd_limit() -> int:
    """As many open files as allowed: one per socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (max(hard, 65536), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            continue
    return soft


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectRefusedError):
        return f"refused:{exc.code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    name = type(exc).__name__
    text = str(exc)
    if text.startswith("handshake"):
        return text.split(":", 1)[0][:40].replace(" ", "_")
    return name


@dataclass
class Peer:
    """A member device of a conversation (E2EE): the keys envelopes are made with."""

    user_id: str
    device_id: str
    agreement_key: X25519PublicKey
    signing_key: Ed25519PublicKey


class Session(SocketClient):
    """One signed-in user with one socket, in one conversation: its delivery bookkeeping."""

    conversation_id: str
    user_id: str
    refresh_token: str
    expires_at: float
    device_id: str | None
    signing_key: Ed25519PrivateKey | None
    agreement_key: X25519PrivateKey | None


def _peek(frame: str) -> dict[str, Any]:
    """``seq`` and ``client_msg_id`` of a ``message:new`` frame without parsing its body.

    The server writes them before ``body`` (``MessageOut``'s field order); a
    frame without them raises, as a malformed one does with a full parse.
    """
    start = frame.index('"seq":') + 6
    seq = int(frame[start : frame.index(",", start)])
    start = frame.index('"client_msg_id":"', start) + 17
    return {"seq": seq, "client_msg_id": frame[start : frame.index('"', start)]}


def make_session(kind: str, owner: Generator, index: int, spec: dict[str, Any]) -> Session:
    base = KINDS[kind]
    cls = _SESSION_CLASSES.setdefault(kind, type(f"{base.__name__}Session", (Session, base), {}))
    session: Session = cls(owner, index, owner.socketio_path)
    session.token = spec["access_token"]
    session.user_id = spec["user_id"]
    session.refresh_token = spec.get("refresh_token", "")
    session.expires_at = float(spec.get("expires_at", 0) or 0)
    session.conversation_id = spec["conversation_id"]
    session.device_id = spec.get("device_id")
    session.signing_key = (
        Ed25519PrivateKey.from_private_bytes(spec["signing_key"])
        if spec.get("signing_key")
        else None
    )
    session.agreement_key = (
        X25519PrivateKey.from_private_bytes(spec["agreement_key"])
        if spec.get("agreement_key")
        else None
    )
    # Seq bookkeeping: everything up to ``contig`` is here; ``ahead`` arrived early.
    state = owner.books.setdefault(index, Books(contig=int(spec.get("last_seq", 0))))
    state.contig = int(spec.get("last_seq", 0))
    return session


_SESSION_CLASSES: dict[str, type[Session]] = {}


@dataclass
class Books:
    """A session's view of its conversation."""

    contig: int
    ahead: set[int] = field(default_factory=set)
    received: set[int] = field(default_factory=set)  # this run's messages, by seq
    unacked: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    gap_check: asyncio.TimerHandle | None = None
    syncing: bool = False
    lost_at: float = 0.0


class RunState:
    """What one timed run collects in this process."""

    def __init__(self, run: int, tag: str, start: float, end: float) -> None:
        self.prefix = f"{tag}{run}."
        self.start = start
        self.end = end
        self.last_delivery = 0.0
        self.sent = 0
        self.resent = 0
        self.skipped = 0  # sends due while the chosen session was disconnected
        self.delivered = 0
        self.in_window = 0
        self.by_sync = 0
        self.duplicates = 0
        self.foreign = 0  # deliveries of other runs' messages (late leftovers)
        self.latency = array.array("f")
        self.received_at = array.array("f")  # seconds since the start, per delivery
        self.sync_delay = array.array("f")
        self.ack_latency = array.array("f")
        self.acked_at = array.array("f")
        self.acked = 0
        self.ack_errors: dict[str, int] = {}
        self.acked_seqs: dict[str, list[int]] = {}
        self.decrypted = 0


class Generator:
    """The sessions of one process, their reconnects, and the current run's counters."""

    def __init__(self, spec: dict[str, Any], conn: Connection | None = None) -> None:
        self.url: str = spec["url"]
        self.kind: str = spec.get("kind", "raw")
        self.socketio_path: str = spec.get("socketio_path", "/socket.io/")
        self.e2ee = spec.get("mode", "plaintext") == "e2ee"
        self.decrypt_every = int(spec.get("decrypt_every", 0))
        self.gap_sync = bool(spec.get("gap_sync", True))
        self.reconnect = bool(spec.get("reconnect", True))
        self.connect_timeout = float(spec.get("connect_timeout", 30))
        self.progress_every = float(spec.get("progress", 0))
        self.tag: str = spec.get("tag", "L")
        self.conn = conn
        self.books: dict[int, Books] = {}
        self.sessions: list[Session] = [
            make_session(self.kind, self, i, s) for i, s in enumerate(spec["sessions"])
        ]
        if spec.get("compression"):
            for s in self.sessions:
                s.compression = True  # type: ignore[attr-defined]
        self.peers: dict[str, list[Peer]] = {
            conv: [
                Peer(
                    u,
                    d,
                    X25519PublicKey.from_public_bytes(a),
                    Ed25519PublicKey.from_public_bytes(s),
                )
                for u, d, a, s in members
            ]
            for conv, members in spec.get("directory", {}).items()
        }
        self.signers: dict[str, Ed25519PublicKey] = {
            p.device_id: p.signing_key for peers in self.peers.values() for p in peers
        }
        self.state: RunState | None = None
        self.errors: dict[str, int] = {}
        self.connect_ms = array.array("f")
        self.reconnect_ms = array.array("f")
        self.reconnects = 0
        self.disconnects = 0
        self.other_events = 0
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: Any = None
        self._recent = array.array("f")  # latencies since the last progress message
        self._delivery_count = 0
        self._pid = __import__("os").getpid()

    # -- bookkeeping helpers --------------------------------------------------

    def error(self, kind: str, count: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + count

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def connected_count(self) -> int:
        return sum(1 for s in self.sessions if s.connected)

    # -- frames from the server (called by the sockets) -----------------------

    def on_message(self, client: SocketClient, frame: str) -> None:
        now = time.time()
        try:
            if len(frame) > PEEK_OVER and not self._decrypt_next():
                data = _peek(frame)
            else:
                data = orjson.loads(frame[2:])[1]
            seq = int(data["seq"])
        except Exception:
            self.error("bad_frame")
            return
        assert isinstance(client, Session)
        books = self.books[client.index]
        self._note_seq(client, books, seq)
        self._count(client, books, data, seq, now, live=True)

    def _decrypt_next(self) -> bool:
        """Whether the next delivery is one of the sample that is decrypted."""
        return bool(self.e2ee and self.decrypt_every) and (
            (self._delivery_count + 1) % self.decrypt_every == 0
        )

    def _count(
        self, client: Session, books: Books, data: dict[str, Any], seq: int, now: float, live: bool
    ) -> None:
        state = self.state
        cmid = data.get("client_msg_id") or ""
        if state is None or not cmid.startswith(state.prefix):
            if state is not None and cmid.startswith(self.tag):
                state.foreign += 1
            else:
                self.other_events += 1
            return
        if seq in books.received:
            # A sync page overlapping what arrived live is normal; the same
            # message pushed twice is not.
            if live:
                state.duplicates += 1
            return
        books.received.add(seq)
        try:
            stamp = int(cmid[len(state.prefix) :].split(".", 1)[0]) / 1e6
        except ValueError:
            self.error("bad_client_msg_id")
            return
        if live:
            latency = now - stamp
            state.latency.append(latency)
            state.received_at.append(now - state.start)
            state.delivered += 1
            state.last_delivery = now
            self._recent.append(latency)
            if now < state.end:
                state.in_window += 1
        else:
            state.by_sync += 1
            state.sync_delay.append(now - stamp)
        if self.e2ee and self.decrypt_every:
            self._delivery_count += 1
            if self._delivery_count % self.decrypt_every == 0 and "body" in data:
                self._open_envelope(client, data)

    def _open_envelope(self, client: Session, data: dict[str, Any]) -> None:
        """Verify and decrypt a sample of deliveries: envelopes must open for their recipients."""
        assert client.agreement_key is not None and client.device_id is not None
        try:
            envelope = data["body"]
            signer = self.signers[envelope["header"]["sender_device_id"]]
            plaintext = decrypt_envelope(
                envelope,
                device_id=client.device_id,
                agreement_key=client.agreement_key,
                sender_signing_public=signer,
            )
            if not isinstance(orjson.loads(plaintext).get("text"), str):
                raise ValueError("no text in the payload")
        except Exception as exc:
            self.error(f"decrypt_failed:{type(exc).__name__}")
            return
        if self.state is not None:
            self.state.decrypted += 1

    def on_other_event(self, client: SocketClient, frame: str) -> None:
        self.other_events += 1

    def _note_seq(self, client: Session, books: Books, seq: int) -> None:
        if seq == books.contig + 1:
            books.contig = seq
            while books.contig + 1 in books.ahead:
                books.ahead.discard(books.contig + 1)
                books.contig += 1
        elif seq > books.contig + 1:
            books.ahead.add(seq)
            if self.gap_sync and books.gap_check is None:
                books.gap_check = asyncio.get_running_loop().call_later(
                    GAP_WAIT, self._check_gap, client
                )

    def _check_gap(self, client: Session) -> None:
        books = self.books[client.index]
        books.gap_check = None
        if books.ahead and client.connected and not books.syncing:
            self._spawn(self.sync(client))

    # -- sync -----------------------------------------------------------------

    async def sync(self, client: Session) -> None:
        """Fetch what this session missed in its conversation (``sync`` event, paged)."""
        books = self.books[client.index]
        if books.syncing:
            return
        books.syncing = True
        try:
            for _ in range(1000):
                packet = orjson.dumps(
                    [
                        "sync",
                        {"positions": {client.conversation_id: books.contig}, "limit": 500},
                    ]
                )
                try:
                    reply = await client.request(packet)
                except Exception as exc:
                    self.error(f"sync:{error_kind(exc)}")
                    return
                if "error" in reply:
                    self.error(f"sync:{reply['error'].get('code', 'error')}")
                    return
                more = False
                now = time.time()
                for conv in reply["data"]["conversations"]:
                    if conv["conversation_id"] != client.conversation_id:
                        continue
                    for message in conv["messages"]:
                        seq = int(message["seq"])
                        self._note_seq(client, books, seq)
                        self._count(client, books, message, seq, now, live=False)
                    more = bool(conv["has_more"])
                if not more:
                    return
        finally:
            books.syncing = False

    # -- acks -------------------------------------------------------------------

    def _ack_handler(self, client: Session, cmid: str) -> Any:
        def on_ack(result: Any) -> None:
            if result is None:
                return  # connection lost: sent again after the reconnect
            books = self.books[client.index]
            entry = books.unacked.pop(cmid, None)
            state = self.state
            if entry is None or state is None:
                return
            if isinstance(result, dict) and "data" in result:
                now = time.time()
                state.acked += 1
                state.ack_latency.append(now - entry[0])
                state.acked_at.append(now - state.start)
                with contextlib.suppress(Exception):
                    state.acked_seqs.setdefault(client.conversation_id, []).append(
                        int(result["data"]["seq"])
                    )
            else:
                code = "error"
                with contextlib.suppress(Exception):
                    code = str(result["error"]["code"])
                if code in RETRYABLE:
                    # Not stored (e.g. a draining node): send it again, as a client does.
                    books.unacked[cmid] = entry
                    self.error(f"ack_retry:{code}")
                    asyncio.get_running_loop().call_later(1.0, self._resend, client, cmid)
                    return
                state.ack_errors[code] = state.ack_errors.get(code, 0) + 1

        return on_ack

    def _resend(self, client: Session, cmid: str) -> None:
        entry = self.books[client.index].unacked.get(cmid)
        if entry is not None and client.connected:
            client.emit(entry[1], self._ack_handler(client, cmid))
            if self.state is not None:
                self.state.resent += 1
        # Not connected: the reconnect sends everything unacked.

    # -- connections ------------------------------------------------------------

    async def _ensure_token(self, client: Session) -> None:
        """Refresh the access token when it is about to expire (a long run, or a refusal)."""
        if not client.refresh_token or client.expires_at - time.time() > 60:
            return
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        async with self._http.post(
            self.url.rstrip("/") + "/v1/auth/refresh",
            json={"refresh_token": client.refresh_token},
        ) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                code = (body or {}).get("error", {}).get("code", response.status)
                raise ConnectionError(f"refresh_{code}")
        client.token = body["access_token"]
        client.refresh_token = body["refresh_token"]
        client.expires_at = time.time() + float(body["expires_in"])

    async def _connect_once(self, client: Session) -> None:
        await self._ensure_token(client)
        try:
            await client.connect(self.url, client.token, self.connect_timeout)
        except ConnectRefusedError as exc:
            if exc.code in ("token_expired", "unauthenticated", "invalid_token"):
                client.expires_at = 0.0  # refresh before the next attempt
            raise

    async def connect(self, ramp: float, concurrency: int) -> dict[str, Any]:
        started = time.perf_counter()
        semaphore = asyncio.Semaphore(max(1, concurrency))
        t0 = time.monotonic()
        failed = 0

        async def one(n: int, client: Session) -> None:
            nonlocal failed
            if ramp > 0:
                await asyncio.sleep(max(0.0, t0 + n / ramp - time.monotonic()))
            async with semaphore:
                for attempt in range(3):
                    begun = time.perf_counter()
                    try:
                        await self._connect_once(client)
                    except Exception as exc:  # counted and reported
                        self.error(f"connect:{error_kind(exc)}")
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    self.connect_ms.append(1000 * (time.perf_counter() - begun))
                    return
                failed += 1

        await asyncio.gather(*(one(n, c) for n, c in enumerate(self.sessions)))
        return {
            "connected": self.connected_count,
            "failed": failed,
            "errors": dict(self.errors),
            "seconds": time.perf_counter() - started,
            "connect_ms": self.connect_ms.tobytes(),
        }

    def on_lost(self, client: SocketClient, was_connected: bool) -> None:
        if self.closing or not was_connected:
            return
        assert isinstance(client, Session)
        self.disconnects += 1
        self.error("disconnected")
        if self.reconnect:
            self.books[client.index].lost_at = time.monotonic()
            self._spawn(self._reconnect(client))

    async def _reconnect(self, client: Session) -> None:
        books = self.books[client.index]
        delay = RECONNECT_FIRST
        while not self.closing:
            await asyncio.sleep(delay * (0.5 + random.random()))
            if self.closing or client.connected:
                return
            try:
                await self._connect_once(client)
            except Exception as exc:
                self.error(f"reconnect:{error_kind(exc)}")
                delay = min(delay * 2, RECONNECT_CAP)
                continue
            self.reconnects += 1
            self.reconnect_ms.append(1000 * (time.monotonic() - books.lost_at))
            # What was sent and not acked: again, with the same client_msg_id.
            for cmid, (_, packet) in list(books.unacked.items()):
                client.emit(packet, self._ack_handler(client, cmid))
                if self.state is not None:
                    self.state.resent += 1
            await self.sync(client)
            return

    async def _watchdog(self) -> None:
        """A socket that hears nothing (not even a ping) for a ping round is dead: drop it."""
        while not self.closing:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for client in self.sessions:
                if client.connected and now - client.last_rx > client.ping_deadline + 1:
                    self.error("ping_timeout")
                    client.abort()

    async def _progress(self) -> None:
        assert self.conn is not None
        while not self.closing:
            await asyncio.sleep(self.progress_every)
            state = self.state
            recent, self._recent = self._recent, array.array("f")
            self.conn.send(
                {
                    "progress": {
                        "time": time.time(),
                        "connected": self.connected_count,
                        "sent": state.sent if state else 0,
                        "acked": state.acked if state else 0,
                        "delivered": (state.delivered + state.by_sync) if state else 0,
                        "errors": sum(self.errors.values())
                        + (sum(state.ack_errors.values()) if state else 0),
                        "reconnects": self.reconnects,
                        "latency": recent.tobytes(),
                    }
                }
            )

    # -- a timed run --------------------------------------------------------------

    def _senders(self) -> list[Session]:
        """Sessions ordered so that consecutive sends go to different groups (one member
        of each group, then a second of each, ...): a steady rate per group rather than
        bursts into one conversation (whose sends serialize on its seq row lock)."""
        seen: dict[str, int] = {}
        ranked = []
        for client in self.sessions:
            rank = seen.get(client.conversation_id, 0)
            seen[client.conversation_id] = rank + 1
            ranked.append((rank, client.index, client))
        return [client for _, _, client in sorted(ranked, key=lambda t: (t[0], t[1]))]

    def _message(self, client: Session, cmid: str, text: str) -> bytes:
        if not self.e2ee:
            body: dict[str, Any] = {"text": text}
            kind = "text"
        else:
            assert client.signing_key is not None and client.device_id is not None
            peers = self.peers[client.conversation_id]
            body = encrypt_envelope(
                payload=orjson.dumps({"text": text}),
                conversation_id=client.conversation_id,
                sender_user_id=client.user_id,
                sender_device_id=client.device_id,
                client_msg_id=cmid,
                created_at=int(time.time() * 1000),
                content_type="application/json",
                sender_signing_key=client.signing_key,
                recipients={p.device_id: p.agreement_key for p in peers},
            )
            kind = "envelope"
        return orjson.dumps(
            [
                "message:send",
                {
                    "conversation_id": client.conversation_id,
                    "client_msg_id": cmid,
                    "kind": kind,
                    "body": body,
                },
            ]
        )

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        rate = float(cmd["rate"])
        start_at = float(cmd["start_at"])
        duration = float(cmd["duration"])
        drain = float(cmd["drain"])
        pad = "x" * max(1, int(cmd.get("text_bytes", 64)))
        state = RunState(int(cmd["run"]), self.tag, start_at, start_at + duration)
        senders = self._senders()
        # Exactly rate x duration messages, paced evenly over the window.
        total = round(rate * duration) if senders else 0
        for books in self.books.values():
            books.received.clear()
        sealed: list[tuple[str, bytes]] = []
        if cmd.get("sealed") and senders:
            # Every message made before the window, stamped with the time it is
            # due (message k at start + k / rate): the window then measures the
            # server, not this process's encryption, and latency counts from
            # when a message should have left, so a late send is not hidden.
            for k in range(total):
                client = senders[k % len(senders)]
                stamp = start_at + k / rate
                cmid = f"{state.prefix}{int(stamp * 1e6)}.{self._pid}-{client.index}-{k + 1}"
                sealed.append((cmid, self._message(client, cmid, pad)))
                if k % 20 == 19:
                    await asyncio.sleep(0)  # keep answering pings
        late = time.time() - start_at
        await asyncio.sleep(max(0.0, start_at - time.time()))
        self.state = state
        cpu_start = cpu_seconds()
        max_behind = 0
        turn = 0
        counter = 0
        while state.sent + state.skipped < total:
            now = time.time()
            if now >= state.end + 1.0:
                break  # this process could not keep up: reported as sent < offered
            due = min(total, int((now - start_at) * rate) + 1)
            max_behind = max(max_behind, due - state.sent - state.skipped)
            while state.sent + state.skipped < due:
                client = senders[turn]
                turn = (turn + 1) % len(senders)
                if not client.connected:
                    state.skipped += 1
                    continue
                counter += 1
                stamp = time.time()
                if sealed:
                    cmid, packet = sealed[state.sent + state.skipped]
                else:
                    cmid = f"{state.prefix}{int(stamp * 1e6)}.{self._pid}-{client.index}-{counter}"
                    packet = self._message(client, cmid, pad)
                self.books[client.index].unacked[cmid] = (stamp, packet)
                client.emit(packet, self._ack_handler(client, cmid))
                state.sent += 1
            await asyncio.sleep(0.002)
        await asyncio.sleep(max(0.0, state.end - time.time()))
        cpu_window = cpu_seconds() - cpu_start
        # Drain: until ``drain`` s after the end, or 1 s without a delivery once
        # everything sent is acked and every session that reconnects is back.
        deadline = state.end + drain
        while time.time() < deadline:
            quiet_since = max(state.last_delivery, state.end)
            unacked = sum(len(b.unacked) for b in self.books.values())
            away = self.reconnect and any(not s.connected for s in self.sessions)
            if time.time() - quiet_since > 1.0 and not unacked and not away:
                break
            await asyncio.sleep(0.05)
        unacked = sum(len(b.unacked) for b in self.books.values())
        return {
            "sent": state.sent,
            "skipped": state.skipped,
            "resent": state.resent,
            "acked": state.acked,
            "ack_errors": state.ack_errors,
            "unacked": unacked,
            "delivered": state.delivered,
            "delivered_in_window": state.in_window,
            "delivered_by_sync": state.by_sync,
            "duplicates": state.duplicates,
            "foreign": state.foreign,
            "decrypted": state.decrypted,
            "errors": dict(self.errors),
            "max_behind": max_behind,
            "sealed_late_s": round(late, 3) if sealed else None,
            "cpu_seconds": cpu_window,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "latency": state.latency.tobytes(),
            "received_at": state.received_at.tobytes(),
            "sync_delay": state.sync_delay.tobytes(),
            "ack_latency": state.ack_latency.tobytes(),
            "acked_at": state.acked_at.tobytes(),
            "acked_seqs": state.acked_seqs,
        }

    async def audit(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Acked messages each session never received; with ``sync``, fetch them first."""
        acked: dict[str, list[int]] = cmd["acked"]

        def missing(client: Session) -> set[int]:
            return set(acked.get(client.conversation_id, ())) - self.books[client.index].received

        recovered_before = self.state.by_sync if self.state else 0
        if cmd.get("sync", True):
            semaphore = asyncio.Semaphore(50)

            async def fetch(client: Session) -> None:
                async with semaphore:
                    await self.sync(client)

            await asyncio.gather(
                *(fetch(c) for c in self.sessions if c.connected and missing(c)),
            )
        lost: dict[str, list[int]] = {}
        lost_deliveries = 0
        for client in self.sessions:
            gone = missing(client)
            if gone:
                lost_deliveries += len(gone)
                lost.setdefault(client.conversation_id, []).extend(sorted(gone))
        state = self.state
        recovered = (state.by_sync if state else 0) - recovered_before
        self.state = None
        final: dict[str, Any] = {}
        if state is not None:
            # The run's final numbers: deliveries may arrive (live, or by a
            # reconnect's sync) after the run's reply and before this audit.
            final = {
                "delivered": state.delivered,
                "delivered_in_window": state.in_window,
                "delivered_by_sync": state.by_sync,
                "duplicates": state.duplicates,
                "decrypted": state.decrypted,
                "latency": state.latency.tobytes(),
                "received_at": state.received_at.tobytes(),
                "sync_delay": state.sync_delay.tobytes(),
            }
        return {
            **final,
            "lost_deliveries": lost_deliveries,
            "lost": {conv: sorted(set(seqs)) for conv, seqs in lost.items()},
            "recovered_at_audit": recovered,
            "errors": dict(self.errors),
            "reconnect_ms": self.reconnect_ms.tobytes(),
            "reconnects": self.reconnects,
            "disconnects": self.disconnects,
            "connected": self.connected_count,
            "other_events": self.other_events,
        }

    def end_run(self) -> None:
        self.state = None

    async def close(self) -> None:
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(c.close() for c in self.sessions), return_exceptions=True)
        if self._http is not None:
            await self._http.close()


# -- process entry ---------------------------------------------------------------


async def _serve(conn: Connection, spec: dict[str, Any]) -> None:
    gen = Generator(spec, conn)
    loop = asyncio.get_running_loop()
    background = [loop.create_task(gen._watchdog())]
    if gen.progress_every > 0:
        background.append(loop.create_task(gen._progress()))
    try:
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            name = cmd["cmd"]
            reply: dict[str, Any]
            if name == "connect":
                reply = await gen.connect(
                    float(cmd.get("ramp", 0)), int(cmd.get("concurrency", 100))
                )
            elif name == "run":
                reply = await gen.run(cmd)
                if not cmd.get("keep_state"):
                    gen.end_run()
            elif name == "audit":
                reply = await gen.audit(cmd)
            elif name == "close":
                await gen.close()
                conn.send({"closed": True})
                return
            else:
                reply = {"error": f"unknown command {name!r}"}
            conn.send(reply)
    finally:
        for task in background:
            task.cancel()


def worker_main(conn: Connection, spec: dict[str, Any]) -> None:
    """multiprocessing target: serve the parent's commands until "close"."""
    raise_fd_limit()
    import uvloop

    uvloop.run(_serve(conn, spec))

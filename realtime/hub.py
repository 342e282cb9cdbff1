"""The socket hub: one python-socketio ``AsyncServer`` per process.

Sockets authenticate in the connect ``auth`` payload (``{"token": <access JWT>}``)
through a verifier the hub is given, join ``user:<id>`` and nothing else, and
send events that domains registered with :meth:`SocketHub.on`. Emits go to user
rooms; with Redis configured they reach the sockets on every node.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import socketio
from prometheus_client import Histogram
from pydantic import BaseModel, ValidationError

from config.errors import (
    InvalidRequestError,
    NotFoundError,
    ParleyError,
    RateLimitedError,
    UnavailableError,
)
from config.settings import RealtimeSettings, RedisSettings, split_list
from realtime import codec
from realtime.control import ControlBus
from realtime.events import PRESENCE_UPDATED, SESSION_REVOKED, user_room
from realtime.fanout import DirectEmitManager
from realtime.frames import abort_connection, record_websocket_protocols
from realtime.metrics import RealtimeMetrics
from realtime.presence import MemoryPresenceStore, PresenceState, PresenceStore
from storage.availability import database_unavailable
from storage.kv import redis_client

log = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Principal:
    """Who is on the other end of a socket."""

    user_id: str
    session_id: str


TokenVerifier = Callable[[str], Awaitable[Principal]]
EventHandler = Callable[[Principal, Any], Awaitable[Any]]
# Given session ids, return those that are no longer active (revoked or expired).
SessionChecker = Callable[[list[str]], Awaitable[set[str]]]
# Seconds to wait before this user may send another event (0: go ahead).
EventLimiter = Callable[[str], Awaitable[float]]
# Who should hear about a user's presence (people who share a conversation).
PeerResolver = Callable[[str], Awaitable[list[str]]]

# Lifecycle events are the server's to raise; a client sending an EVENT packet
# with one of these names must not reach the handlers (python-socketio would
# dispatch it to them like any other event).
_RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error"})
SESSION_REVOKED_CONTROL = "session_revoked"


# The payload of a packet whose JSON did not parse (NaN, an unpaired surrogate
# as JavaScript writes for a string cut inside an emoji, nesting past 1,024
# levels, trailing bytes): it still reaches the event dispatch, so the client
# gets an error ack instead of silence.
_UNREADABLE = object()
# Socket.IO packet types that carry binary attachments in frames of their own.
_BINARY_PACKET_TYPES = ("5", "6")


class _TextPacket(socketio.packet.Packet):  # type: ignore[misc]
    """Parley sends JSON text only, so an outgoing packet is never searched for bytes.

    The stock packet walks every list and dict of the payload looking for
    binary attachments each time one is made: for an envelope addressed to
    fifty devices, that walk cost more than encoding it. Incoming packets
    whose JSON does not parse keep their type, namespace and ack id, with
    ``_UNREADABLE`` as their data.
    """

    uses_binary_events = False

    def decode(self, encoded_packet: str | bytes) -> int:
        try:
            return int(super().decode(encoded_packet))
        except orjson.JSONDecodeError:  # the JSON is the last thing decoded
            self.data = _UNREADABLE
            return 0


class _SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        # Parley's protocol is JSON text. A binary packet, a binary frame or a
        # packet that does not parse is a broken or hostile client: it is
        # disconnected (python-socketio would keep a half-built binary packet
        # and silently swallow everything the socket sends after it).
        if not isinstance(data, str) or data[:1] in _BINARY_PACKET_TYPES:
            await self._drop(eio_sid, "binary data (Parley's socket protocol is JSON text)")
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except ValueError as exc:
            await self._drop(eio_sid, f"a packet that does not parse ({exc})")

    async def _drop(self, eio_sid: str, what: str) -> None:
        log.info("socket %s sent %s: disconnecting it", eio_sid, what)
        await self.eio.disconnect(eio_sid)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await super()._handle_connect(eio_sid, namespace, None if data is _UNREADABLE else data)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        if data is _UNREADABLE:
            await self._refuse(
                eio_sid,
                namespace,
                id,
                InvalidRequestError(
                    "the payload is not JSON this server reads (NaN, Infinity, an unpaired "
                    "surrogate, nesting over 1,024 levels or bytes after the JSON)",
                    code="malformed_json",
                ),
            )
            return
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            await self._refuse(
                eio_sid,
                namespace,
                id,
                InvalidRequestError("an event is [name, payload] with a string name"),
            )
            return
        if data[0] in _RESERVED_EVENTS:
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _refuse(
        self, eio_sid: str, namespace: str | None, id: Any, error: ParleyError
    ) -> None:
        """Answer an event that never reaches a handler, if the client asked for an ack."""
        if id is not None:
            ack = self.packet_class(
                socketio.packet.ACK, namespace=namespace, id=id, data=[error_ack(error)]
            )
            await self._send_packet(eio_sid, ack)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        # engine.io closes a socket on the client's CLOSE packet without waking
        # its pending long-poll GET, which then hangs until the ping timeout
        # (and holds up shutdown); wake it so the request ends now.
        socket = self.eio.sockets.get(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)
        if socket is not None:
            socket.queue.put_nowait(None)


# The longest wait between attempts to resubscribe to Redis after it went away.
_REDIS_RETRY_CAP = 2.0


# Publishes waiting for Redis beyond this many are dropped, oldest first (clients
# fill such gaps by sync); a node cut off from Redis must not grow without bound.
_PUBLISH_BACKLOG = 50_000
# Publishes sent in one pipeline (one round trip).
_PUBLISH_BATCH = 512


_EMIT = b'{"method":"emit",'


class _RedisManager(socketio.AsyncRedisManager, DirectEmitManager):  # type: ignore[misc]
    """python-socketio's Redis manager, with batched publishes, resubscribing within
    seconds after an outage.

    The library awaits one PUBLISH per emit, each holding a pooled connection
    for its round trip: under load the emits in flight outgrow the pool and fail
    ("Cannot publish to redis"). Here an emit queues its packet and one
    publisher task sends whatever has queued in a single pipeline, in order.
    The library also doubles its resubscribe wait up to 60 s, so cross-node
    fan-out could stay dead long after Redis is back while /readyz says 200.
    """

    connected: bool

    def __init__(self, *args: Any, remote_seconds: Histogram | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._remote_seconds = remote_seconds
        self._backlog: collections.deque[bytes | str] = collections.deque()
        self._backlog_ready = asyncio.Event()
        self._backlog_sent = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """The library's emit without its search for bytes (JSON only, DECISIONS 44):
        handled here, then published for the other nodes, ``host_id`` last."""
        if callback is not None or kwargs.get("ignore_queue"):
            await super().emit(
                event,
                data,
                namespace,
                room=room,
                skip_sid=skip_sid,
                callback=callback,
                to=to,
                **kwargs,
            )
            return
        message = {
            "method": "emit",
            "event": event,
            "data": list(data) if isinstance(data, tuple) else [data],
            "binary": False,
            "namespace": namespace or "/",
            "room": to or room,
            "skip_sid": skip_sid,
            "callback": None,
            "sent_at": time.time(),
            "host_id": self.host_id,
        }
        await self._handle_emit(message)  # this node's sockets
        await self._publish(message)  # the other nodes'

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        await super()._handle_emit(message)
        sent_at = message.get("sent_at")
        if (
            self._remote_seconds is not None
            and isinstance(sent_at, float)
            and message.get("host_id") != self.host_id
        ):
            # Another node's emit, from its call to the last local socket write:
            # the publisher's batching, Redis, this node's loop. Wall clocks of two
            # hosts: as exact as their clock sync.
            self._remote_seconds.observe(max(0.0, time.time() - sent_at))

    async def _listen(self) -> Any:
        # This node's own publishes come back from Redis too; the library decodes
        # each one only to drop it (its sockets had it already). An emit's JSON
        # ends with its host_id (``emit`` above), so they are dropped undecoded.
        own = f'"host_id":"{self.host_id}"}}'.encode()
        async for data in super()._listen():
            if isinstance(data, bytes) and data.endswith(own) and data.startswith(_EMIT):
                continue
            yield data

    async def _publish(self, data: Any) -> None:
        if len(self._backlog) >= _PUBLISH_BACKLOG:
            self._backlog.popleft()
            log.warning("socket fan-out backlog full; dropping the oldest publish")
        self._backlog.append(self.json.dumps(data))
        self._backlog_sent.clear()
        self._backlog_ready.set()
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish_backlog(), name="parley-publish")

    async def _publish_backlog(self) -> None:
        while True:
            await self._backlog_ready.wait()
            self._backlog_ready.clear()
            while self._backlog:
                count = min(len(self._backlog), _PUBLISH_BATCH)
                batch = [self._backlog.popleft() for _ in range(count)]
                await self._send_batch(batch)
            self._backlog_sent.set()

    async def stop_publishing(self, wait: float = 1.0) -> None:
        """Send what is queued (for at most ``wait`` seconds), then stop the publisher."""
        if self._backlog and self._publisher is not None and not self._publisher.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._backlog_sent.wait(), wait)
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher

    async def _send_batch(self, batch: list[bytes | str]) -> None:
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                async with self.redis.pipeline(transaction=False) as pipe:
                    for item in batch:
                        pipe.publish(self.channel, item)
                    await pipe.execute()
                return
            except Exception as exc:
                self.connected = False
                if attempt == 2:
                    # Messages are durable; receivers fill the gap on sync.
                    log.error("socket fan-out: %d publishes lost (%s)", len(batch), exc)
                    await asyncio.sleep(0.1)

    def _redis_connect(self) -> None:
        if urlsplit(self.redis_url).scheme.endswith("+sentinel"):
            super()._redis_connect()
            return
        # A blocking pool: under a burst, publishes wait for a connection
        # instead of failing past redis-py's 100 (see storage.kv.redis_client).
        self.redis = redis_client(self.redis_url, **self.redis_options)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True

    async def _redis_listen_with_retries(self) -> Any:
        retry = 0.1
        subscribed = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    await self.pubsub.subscribe(self.channel)
                    subscribed, retry = True, 0.1
                async for message in self.pubsub.listen():
                    yield message
            except Exception as exc:
                log.warning("socket fan-out lost Redis (%s); retrying in %.1f s", exc, retry)
                subscribed = False
                await asyncio.sleep(retry)
                retry = min(retry * 2, _REDIS_RETRY_CAP)


def describe_validation_error(exc: ValidationError) -> str:
    """A one-line message naming each bad field, for error acks and 4xx bodies."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def error_ack(exc: ParleyError) -> dict[str, Any]:
    return exc.to_dict()


class SocketHub:
    """Owns the Socket.IO server, its connections and the event dispatch."""

    def __init__(
        self,
        settings: RealtimeSettings,
        redis: RedisSettings,
        verifier: TokenVerifier,
        metrics: RealtimeMetrics,
        control: ControlBus,
        session_checker: SessionChecker | None = None,
        *,
        presence: PresenceStore | None = None,
        peers: PeerResolver | None = None,
        limiter: EventLimiter | None = None,
    ) -> None:
        self.node_id = uuid.uuid4().hex
        self._presence = presence or MemoryPresenceStore()
        self._peers = peers
        self._limiter = limiter
        self._user_sockets: dict[str, int] = {}
        self._control_handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        self._background: list[asyncio.Task[None]] = []
        self._settings = settings
        self._verifier = verifier
        self._metrics = metrics
        self._control = control
        self._session_checker = session_checker
        self._principals: dict[str, Principal] = {}
        self._session_sids: dict[str, set[str]] = {}
        # Events being handled per socket, and the sockets a drain is closing:
        # a drain waits for a socket's acks to go out before it drops the socket.
        self._in_flight: dict[str, int] = {}
        self._idle = asyncio.Condition()
        self._closing: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None
        manager: socketio.AsyncManager
        if redis.url:
            manager = _RedisManager(
                redis.url,
                channel=redis.channel,
                json=codec,
                logger=log,
                remote_seconds=metrics.remote_delivery_seconds,
            )
        else:
            manager = DirectEmitManager()
        origins = split_list(settings.cors_allowed_origins)
        # "*": any origin; a list: those; nothing: same origin only (engineio's None).
        cors: str | list[str] | None = "*" if origins == ["*"] else (origins or None)
        self.sio = _SocketServer(
            async_mode="asgi",
            client_manager=manager,
            serializer=_TextPacket,
            json=codec,
            cors_allowed_origins=cors,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            max_http_buffer_size=settings.max_frame_bytes,
            # Our own loggers, so python-socketio adds no handler of its own
            # and its records go through Parley's JSON log (config/logging.py).
            logger=logging.getLogger("parley.socketio"),
            engineio_logger=logging.getLogger("parley.engineio"),
        )
        record_websocket_protocols(self.sio.eio)
        metrics.count_deliveries(manager)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_unknown_event)

    # -- wiring ---------------------------------------------------------------

    def asgi_app(self, other: Any) -> socketio.ASGIApp:
        """Serve sockets at ``/socket.io/`` and hand everything else to ``other``."""
        return socketio.ASGIApp(self.sio, other_asgi_app=other, socketio_path="socket.io")

    def on(
        self, event: str, model: type[P], handler: Callable[[Principal, P], Awaitable[Any]]
    ) -> None:
        """Register a client event: payload validated by ``model``, result sent as the ack."""

        async def dispatch(sid: str, *args: Any) -> dict[str, Any]:
            started = time.perf_counter()
            outcome = "ok"
            self._in_flight[sid] = self._in_flight.get(sid, 0) + 1
            try:
                principal = self._principals.get(sid)
                if principal is None:
                    raise ParleyError(
                        "socket is not authenticated", code="unauthenticated", status=401
                    )
                if sid in self._closing:
                    # The socket is being dropped by a drain: do nothing that its
                    # ack could not report (the client resends after reconnecting).
                    raise UnavailableError("this node is shutting down; reconnect and resend")
                if self._limiter is not None:
                    wait = await self._limiter(principal.user_id)
                    if wait > 0:
                        retry = int(wait) + 1
                        raise RateLimitedError(
                            f"too many events; retry after {retry} s", retry_after=retry
                        )
                if len(args) != 1:
                    raise InvalidRequestError(f"{event} takes exactly one payload object")
                try:
                    payload = model.model_validate(args[0])
                except ValidationError as exc:
                    raise InvalidRequestError(describe_validation_error(exc)) from None
                result = await handler(principal, payload)
                if isinstance(result, BaseModel):
                    result = result.model_dump(mode="json")
                return {"data": result}
            except ParleyError as exc:
                outcome = exc.code
                return error_ack(exc)
            except Exception as exc:
                if (away := database_unavailable(exc)) is not None:
                    outcome = away.code
                    log.warning("socket event %s: database unavailable (%s)", event, exc)
                    return error_ack(away)
                outcome = "internal_error"
                log.exception("socket event %s failed", event)
                return {"error": {"code": "internal_error", "message": "internal server error"}}
            finally:
                self._metrics.events_in.labels(event, outcome).inc()
                self._metrics.event_seconds.labels(event).observe(time.perf_counter() - started)
                await self._done_handling(sid)

        self.sio.on(event, dispatch)

    async def _on_unknown_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        """Every event without a handler: an error ack, not silence (a typo would hang).

        Counted against the sender's event limit like any other, so a flood of
        made-up names is refused as cheaply as a flood of real ones.
        """
        principal = self._principals.get(sid)
        if principal is not None and self._limiter is not None:
            wait = await self._limiter(principal.user_id)
            if wait > 0:
                self._metrics.events_in.labels("unknown", "rate_limited").inc()
                retry = int(wait) + 1
                return error_ack(
                    RateLimitedError(f"too many events; retry after {retry} s", retry_after=retry)
                )
        self._metrics.events_in.labels("unknown", "unknown_event").inc()
        shown = event if len(event) <= 64 else event[:64] + "..."
        return error_ack(
            NotFoundError(
                f"no event {shown!r}; docs/PROTOCOL.md lists the events", code="unknown_event"
            )
        )

    # -- emitting -------------------------------------------------------------

    async def emit_to_users(self, event: str, data: Any, user_ids: Iterable[str]) -> None:
        """One emit, encoded once, to every socket of these users on every node."""
        rooms = [user_room(uid) for uid in dict.fromkeys(user_ids)]
        if not rooms:
            return
        await self.sio.emit(event, data, to=rooms)
        self._metrics.events_out.labels(event).inc()

    @property
    def local_socket_count(self) -> int:
        return len(self._principals)

    # -- sessions -------------------------------------------------------------

    async def revoke_session(self, user_id: str, session_id: str) -> None:
        """Tell every node to drop the sockets of a revoked session, at once."""
        await self._control.publish(
            {"type": SESSION_REVOKED_CONTROL, "user_id": user_id, "session_id": session_id}
        )

    def on_control(self, kind: str, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Run ``handler`` on every node for each control message of ``kind``."""
        self._control_handlers[kind] = handler

    async def publish_control(self, message: dict[str, Any]) -> None:
        """Send a control message to every node, this one included."""
        await self._control.publish(message)

    async def _on_control(self, message: dict[str, Any]) -> None:
        if message.get("type") == SESSION_REVOKED_CONTROL:
            await self._drop_session(str(message.get("session_id")))
            return
        handler = self._control_handlers.get(str(message.get("type")))
        if handler is not None:
            await handler(message)

    async def _drop_session(self, session_id: str) -> None:
        for sid in list(self._session_sids.get(session_id, ())):
            with contextlib.suppress(Exception):
                await self.sio.emit(SESSION_REVOKED, {"session_id": session_id}, to=sid)
            await self._disconnect_local(sid)

    async def _sweep_sessions(self) -> None:
        """Backstop for lost control messages: recheck local sessions periodically."""
        assert self._session_checker is not None
        while True:
            await asyncio.sleep(self._settings.session_check_interval)
            sessions = list(self._session_sids)
            if not sessions:
                continue
            try:
                inactive = await self._session_checker(sessions)
            except Exception:
                log.warning("session sweep failed", exc_info=True)
                continue
            for session_id in inactive:
                await self._drop_session(session_id)

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        await self._control.start(self._on_control)
        if self._session_checker is not None:
            self._sweeper = asyncio.create_task(self._sweep_sessions(), name="parley-session-sweep")
        self._background.append(asyncio.create_task(self._presence_loop(), name="parley-presence"))
        self._background.append(
            asyncio.create_task(self._slow_consumer_loop(), name="parley-slow-consumers")
        )

    # -- presence -------------------------------------------------------------

    async def presence(self, user_ids: list[str]) -> list[PresenceState]:
        return await self._presence.states(user_ids)

    async def _announce_presence(self, user_id: str, online: bool) -> None:
        if self._peers is None:
            return
        try:
            audience = await self._peers(user_id)
            await self.emit_to_users(
                PRESENCE_UPDATED,
                {
                    "user_id": user_id,
                    "online": online,
                    "last_seen": None if online else time.time(),
                },
                audience,
            )
        except Exception:
            log.warning("presence notice for %s failed", user_id, exc_info=True)

    async def _presence_loop(self) -> None:
        interval = self._settings.presence_heartbeat
        while True:
            await asyncio.sleep(interval)
            try:
                back = await self._presence.heartbeat(
                    self.node_id, list(self._user_sockets), ttl=3 * interval
                )
                for uid in back:  # e.g. Redis lost our entries while it restarted
                    await self._announce_presence(uid, True)
                for uid in await self._presence.expired():
                    if uid not in self._user_sockets:
                        await self._announce_presence(uid, False)
            except Exception:
                log.warning("presence heartbeat failed", exc_info=True)

    # -- slow consumers -------------------------------------------------------

    async def _slow_consumer_loop(self) -> None:
        """A client that does not read must not grow this node's memory without bound:
        past ``max_pending_packets`` queued for it, its transport is dropped (it
        reconnects and syncs what it missed).

        Frames the fan-out writes straight to a websocket (realtime/frames.py)
        do not pass the queue, but only while uvicorn's transport buffer is
        below its high-water mark (``writable``); above it they queue here, so
        a stalled socket holds at most that buffer plus this many packets."""
        limit = self._settings.max_pending_packets
        while True:
            await asyncio.sleep(1)
            for sid in list(self._principals):
                eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
                socket = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
                if socket is not None and socket.queue.qsize() > limit:
                    log.warning("dropping a slow consumer", extra={"queued": socket.queue.qsize()})
                    self._metrics.slow_consumers.inc()
                    # Its writer is stuck behind a full buffer: a close frame
                    # would never get out, so reset the connection itself,
                    # first: once engine.io's close below lets the websocket
                    # handler end, the transport is no longer recorded.
                    abort_connection(socket)
                    await self._abort_transport(sid)

    async def _done_handling(self, sid: str) -> None:
        left = self._in_flight.get(sid, 1) - 1
        if left > 0:
            self._in_flight[sid] = left
            return
        self._in_flight.pop(sid, None)
        if sid in self._closing:
            async with self._idle:
                self._idle.notify_all()

    async def drain(self, *, spread: float, settle: float) -> None:
        """Move every local socket to another node, in slices over ``spread`` seconds.

        For each slice: its sockets stop taking new events, the events they have
        in flight finish and their acks go out, then their transports are
        dropped (see :meth:`disconnect_all`). Slices spare the other nodes one
        thundering herd of reconnects and syncs. Waiting for acks has one budget
        for the whole drain (``settle`` seconds past the spread): on an
        overloaded node the drain still ends in ``spread + settle`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spread + settle
        sids = list(self._principals)
        slices = max(1, min(10, len(sids)))
        for index in range(slices):
            await self._drop_after_acks(sids[index::slices], deadline - loop.time())
            if index < slices - 1:
                await asyncio.sleep(spread / slices)
        # Sockets whose handshake was already under way when the drain began.
        await self._drop_after_acks(list(self._principals), deadline - loop.time())

    async def _drop_after_acks(self, sids: list[str], settle: float) -> None:
        self._closing.update(sids)

        def idle() -> bool:
            return not any(sid in self._in_flight for sid in sids)

        if settle > 0 and not idle():
            async with self._idle:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait_for(idle), settle)
        for sid in sids:
            await self._abort_transport(sid)

    async def disconnect_all(self) -> None:
        """Drop every local socket's transport so its client reconnects (to another node).

        A Socket.IO disconnect packet would tell clients the server wants them
        gone for good, and they would not reconnect; an aborted transport looks
        like a network failure, which every client answers by reconnecting.
        """
        for sid in list(self._principals):
            await self._abort_transport(sid)

    async def _abort_transport(self, sid: str) -> None:
        try:
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
            socket = self.sio.eio._get_socket(eio_sid) if eio_sid else None
            if socket is not None:
                await socket.close(wait=False, abort=True)
        except Exception:
            log.debug("abort of %s failed", sid, exc_info=True)
        self._forget(sid)

    async def close(self) -> None:
        """Disconnect local sockets, stop background work, stop the server."""
        for task in [*self._background, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.disconnect_all()
        if isinstance(self.sio.manager, _RedisManager):
            await self.sio.manager.stop_publishing()
        await self._control.close()
        for uid in list(self._user_sockets):
            with contextlib.suppress(Exception):
                await self._presence.leave(self.node_id, uid)
        await self._presence.close()
        await self.sio.shutdown()

    async def _disconnect_local(self, sid: str) -> None:
        try:
            await self.sio.disconnect(sid, ignore_queue=True)
        except Exception:
            # A dead socket must not stop the others.
            log.debug("disconnect of %s failed", sid, exc_info=True)
        self._forget(sid)

    def _forget(self, sid: str) -> None:
        self._closing.discard(sid)
        principal = self._principals.pop(sid, None)
        if principal is None:
            return
        self._metrics.sockets.dec()
        left = self._user_sockets.get(principal.user_id, 0) - 1
        if left > 0:
            self._user_sockets[principal.user_id] = left
        else:
            self._user_sockets.pop(principal.user_id, None)
            task = asyncio.get_running_loop().create_task(self._went_away(principal.user_id))
            self._background.append(task)
            task.add_done_callback(self._background_done)
        sids = self._session_sids.get(principal.session_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._session_sids[principal.session_id]

    # -- connection handlers --------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        if sid in self._principals:
            return
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            self._metrics.connects.labels("refused").inc()
            raise socketio.exceptions.ConnectionRefusedError(
                "missing access token",
                {"code": "unauthenticated", "message": 'send {"token": <access token>} as auth'},
            )
        try:
            principal = await self._verifier(token)
        except ParleyError as exc:
            self._metrics.connects.labels("refused").inc()
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code, "message": exc.message}
            ) from None
        self._principals[sid] = principal
        self._session_sids.setdefault(principal.session_id, set()).add(sid)
        await self.sio.enter_room(sid, user_room(principal.user_id))
        self._user_sockets[principal.user_id] = self._user_sockets.get(principal.user_id, 0) + 1
        if self._user_sockets[principal.user_id] == 1:
            try:
                back = await self._presence.heartbeat(
                    self.node_id, [principal.user_id], ttl=3 * self._settings.presence_heartbeat
                )
            except Exception:
                log.warning("presence update failed", exc_info=True)
                back = []
            if back:
                await self._announce_presence(principal.user_id, True)
        self._metrics.connects.labels("accepted").inc()
        self._metrics.sockets.inc()

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._forget(sid)

    async def _went_away(self, user_id: str) -> None:
        """The user's last socket on this node closed: offline, unless on another node."""
        if user_id in self._user_sockets:
            return  # reconnected meanwhile
        try:
            if await self._presence.leave(self.node_id, user_id):
                await self._announce_presence(user_id, False)
        except Exception:
            log.warning("presence update failed", exc_info=True)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._background.remove(task)

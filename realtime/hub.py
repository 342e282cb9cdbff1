"""The socket hub: one python-socketio ``AsyncServer`` per process.

Sockets authenticate in the connect ``auth`` payload (``{"token": <access JWT>}``)
through a verifier the hub is given, join ``user:<id>`` and nothing else, and
send events that domains registered with :meth:`SocketHub.on`. Emits go to user
rooms; with Redis configured they reach the sockets on every node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import socketio
from pydantic import BaseModel, ValidationError

from config.errors import InvalidRequestError, ParleyError
from config.settings import RealtimeSettings, RedisSettings, split_list
from realtime import codec
from realtime.events import user_room
from realtime.metrics import RealtimeMetrics

log = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Principal:
    """Who is on the other end of a socket."""

    user_id: str
    session_id: str


TokenVerifier = Callable[[str], Awaitable[Principal]]
EventHandler = Callable[[Principal, Any], Awaitable[Any]]


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
    ) -> None:
        self._verifier = verifier
        self._metrics = metrics
        self._principals: dict[str, Principal] = {}
        manager: socketio.AsyncManager
        if redis.url:
            manager = socketio.AsyncRedisManager(
                redis.url, channel=redis.channel, json=codec, logger=log
            )
        else:
            manager = socketio.AsyncManager()
        origins = split_list(settings.cors_allowed_origins)
        cors: str | list[str] = "*" if origins == ["*"] else origins
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=manager,
            json=codec,
            cors_allowed_origins=cors,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            max_http_buffer_size=settings.max_frame_bytes,
            logger=False,
            engineio_logger=False,
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)

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
            try:
                principal = self._principals.get(sid)
                if principal is None:
                    raise ParleyError(
                        "socket is not authenticated", code="unauthenticated", status=401
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
            except Exception:
                outcome = "internal_error"
                log.exception("socket event %s failed", event)
                return {"error": {"code": "internal_error", "message": "internal server error"}}
            finally:
                self._metrics.events_in.labels(event, outcome).inc()
                self._metrics.event_seconds.labels(event).observe(time.perf_counter() - started)

        self.sio.on(event, dispatch)

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

    # -- lifecycle ------------------------------------------------------------

    async def close(self) -> None:
        """Disconnect local sockets so clients reconnect elsewhere, then stop the server."""
        for sid in list(self._principals):
            try:
                await self.sio.disconnect(sid, ignore_queue=True)
            except Exception:
                log.debug("disconnect of %s failed during shutdown", sid, exc_info=True)
        await self.sio.shutdown()

    # -- connection handlers --------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
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
        await self.sio.enter_room(sid, user_room(principal.user_id))
        self._metrics.connects.labels("accepted").inc()
        self._metrics.sockets.inc()

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        if self._principals.pop(sid, None) is not None:
            self._metrics.sockets.dec()
